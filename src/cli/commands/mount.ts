/**
 * `dadi mount IMAGE|LAYER... DIR`: serve the image with `dadi serve` on a private unix socket,
 * attach the export as a block device and mount its file system on DIR (the last argument).
 * `dadi mount --list` shows the recorded mounts.
 */
import type { Command } from 'commander';

interface MountOptions { writable?: string; readOnly?: boolean; size?: string; options?: string; json?: boolean; list?: boolean }

/** The command line that runs this same dadi (same node, same entry, same loader flags). */
function selfArgv(): string[] {
  return [process.execPath, ...process.execArgv, process.argv[1]!];
}

async function list(json: boolean): Promise<void> {
  const { listMounts } = await import('../../host/image-mount.ts');
  const mounts = await listMounts();
  if (json) {
    process.stdout.write(JSON.stringify(mounts, null, 2) + '\n');
    return;
  }
  for (const m of mounts) {
    process.stdout.write(`${m.mountPoint}\t${m.status}\t${m.readOnly ? 'ro' : 'rw'}\t${m.device ?? '-'}\t${m.image.join(' ')}${m.writableDir ? `\twritable=${m.writableDir}` : ''}\n`);
  }
}

export function register(program: Command): void {
  program
    .command('mount')
    .description('serve an image (device config JSON, or layer files lowest first) and mount its file system on DIR')
    .argument('[image-and-dir...]', 'IMAGE|LAYER... DIR — the image (or its layers, lowest first), then the mount point')
    .option('--writable <dir>', 'keep a writable layer in DIR (created if empty; size from the lowers unless --size)')
    .option('--read-only', 'serve and mount read-only (the default when there is no writable layer; with --writable, the layer is only read)')
    .option('--size <size>', 'virtual size of a new writable layer (default: that of the lowers), e.g. 10G')
    .option('-o, --options <opts>', 'extra mount options, comma-separated')
    .option('--json', 'print the mount record as JSON')
    .option('--list', 'list the dadi mounts instead ($DADI_STATE_DIR, default /run/dadi)')
    .addHelpText('after', '\nExamples:\n  dadi mount base.lsmt app.zlsmt /mnt/app\n  dadi mount --writable /var/lib/w base.lsmt /mnt/app\n  dadi mount --list')
    .action(async (args: string[], opts: MountOptions) => {
      if (opts.list) {
        if (args.length > 0) throw new Error('--list takes no IMAGE or DIR');
        await list(opts.json ?? false);
        return;
      }
      if (args.length < 2) throw new Error('dadi mount needs IMAGE (or layer files) and DIR');
      const { resolve } = await import('node:path');
      const { mountImage } = await import('../../host/image-mount.ts');
      const image = args.slice(0, -1);
      const dir = args[args.length - 1]!;
      const writable = opts.writable ? resolve(opts.writable) : undefined;
      const rec = await mountImage({
        mountPoint: dir,
        image,
        // Without a writable layer the export is read-only and the mount follows it.
        readOnly: opts.readOnly ?? false,
        ...(writable ? { writableDir: writable } : {}),
        ...(opts.options ? { mountOptions: opts.options.split(',').filter(Boolean) } : {}),
        server: (socket) => [
          ...selfArgv(), 'serve', ...image, '--listen', `unix:${socket}`,
          ...(writable ? ['--writable', writable] : []),
          ...(opts.readOnly ? ['--read-only'] : []),
          ...(opts.size ? ['--size', opts.size] : []),
        ],
      });
      if (opts.json) process.stdout.write(JSON.stringify(rec, null, 2) + '\n');
      else process.stdout.write(`mounted ${image.join(' ')} on ${rec.mountPoint} (${rec.fsType}, ${rec.readOnly ? 'read-only' : 'writable'}, ${rec.device})\n`);
    });
}
