/**
 * `dadi cat-file IMAGE|LAYER... PATH`: a file of an image's file system to stdout (or -o FILE),
 * read in userspace without mounting; symlinks inside the image are followed within it. With
 * --extents, the disk byte ranges holding the file instead (what prefetching by file list reads).
 */
import type { Command } from 'commander';
import { once } from 'node:events';
import { addRemoteOptions, type RemoteFlags } from '../remote-options.ts';

interface CatFileOptions extends RemoteFlags { output?: string; extents?: boolean }

export function register(program: Command): void {
  const cmd = program
    .command('cat-file')
    .description('write a file of an image\'s file system to stdout, read in userspace without mounting')
    .argument('<image-and-path...>', 'IMAGE|LAYER... PATH: a registry reference, oci:DIR[:TAG], a device config JSON or layer files lowest first, then the file\'s path inside the image')
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .option('--extents', 'print the disk byte ranges holding the file ("offset length" per line) instead of its bytes');
  addRemoteOptions(cmd)
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi cat-file 127.0.0.1:5000/app:v1-obd /etc/os-release',
      '  dadi cat-file base.lsmt app.zlsmt /usr/bin/python3 -o python3',
      '  dadi cat-file --extents oci:/srv/images/app-obd:1 /usr/lib/x86_64-linux-gnu/libc.so.6',
    ].join('\n'))
    .action(async (args: string[], opts: CatFileOptions) => {
      const { createWriteStream } = await import('node:fs');
      const { withImageReader } = await import('../../image/open-image.ts');
      const { remoteImageOptions } = await import('../remote-options.ts');
      const { imageAndPath } = await import('./ls.ts');
      const { image, path } = imageAndPath(args, true);
      await withImageReader(image, () => remoteImageOptions(opts), async (fs) => {
        if (opts.extents) {
          process.stdout.write((await fs.extents(path)).map((r) => `${r.offset} ${r.length}\n`).join(''));
          return;
        }
        const out = opts.output ? createWriteStream(opts.output) : process.stdout;
        try {
          for await (const chunk of fs.readFile(path)) if (!out.write(chunk)) await once(out, 'drain');
        } catch (e) {
          // The reader closed the pipe (`dadi cat-file ... | head`): not an error of ours.
          if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
        }
        if (opts.output) await new Promise<void>((resolve, reject) => (out as ReturnType<typeof createWriteStream>).end((err?: Error | null) => (err ? reject(err) : resolve())));
      });
    });
}
