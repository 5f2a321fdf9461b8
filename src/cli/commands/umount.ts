/** `dadi umount DIR`: unmount a `dadi mount`, detach its device and stop its server (which flushes). */
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('umount')
    .description('unmount a dadi mount: file system, block device, nbdfuse, then the server (which flushes its writable layer)')
    .argument('<dir>', 'the mount point given to dadi mount')
    .option('--force', 'detach lazily even if the file system is busy')
    .option('--json', 'print the removed mount record as JSON')
    .action(async (dir: string, opts: { force?: boolean; json?: boolean }) => {
      const { unmountImage } = await import('../../host/image-mount.ts');
      const rec = await unmountImage(dir, { force: opts.force ?? false });
      if (opts.json) process.stdout.write(JSON.stringify(rec, null, 2) + '\n');
      else process.stdout.write(`unmounted ${rec.mountPoint}\n`);
    });
}
