/**
 * `dadi cat [--upper DATA,INDEX] [--size N] [-o OUT] LAYER...`: the merged logical bytes of a
 * layer stack, lowest layer first, to stdout or a file (sparse when it is a regular file).
 */
import type { Command } from 'commander';

interface CatOptions { upper?: string; size?: string; output?: string }

export function register(program: Command): void {
  program
    .command('cat')
    .description('write the merged logical bytes of a layer stack (lowest layer first)')
    .argument('[layer...]', 'layer files, lowest first: plain LSMT, ZFile-compressed or tar-wrapped (detected from the bytes); DATA,INDEX reads a writable layer')
    .option('--upper <data,index>', 'a writable layer on top (its data and index files)')
    .option('--size <size>', 'virtual size to expose (default: the top-most layer that states one), e.g. 10G')
    .option('-o, --output <file>', 'write to FILE instead of stdout (holes are left sparse in a regular file)')
    .addHelpText('after', '\nExamples:\n  dadi cat base.lsmt app.zlsmt > disk.img\n  dadi cat -o disk.img base.lsmt --upper rw.data,rw.index\n  dadi cat -o disk.img --upper rw.data,rw.index')
    .action(async (layers: string[], opts: CatOptions) => {
      const { existsSync } = await import('node:fs');
      const { open } = await import('node:fs/promises');
      const { openStackFromFiles, parsePair } = await import('../../image/chain/files.ts');
      const { copyDiskToFile, copyDiskToStream } = await import('../../disk/copy-out.ts');
      const { parseSize } = await import('../../util/size.ts');
      if (layers.length === 0 && !opts.upper) {
        const { UsageError } = await import('../../errors.ts');
        throw new UsageError('give at least one layer, or --upper DATA,INDEX (a writable layer alone is a stack too)');
      }
      const lowers = layers.map((l) => (l.includes(',') && !existsSync(l) ? parsePair(l, 'layer') : l));
      const stack = await openStackFromFiles(lowers, {
        ...(opts.upper ? { upper: parsePair(opts.upper, '--upper') } : {}),
        ...(opts.size ? { size: parseSize(opts.size) } : {}),
      });
      try {
        if (opts.output) {
          const fh = await open(opts.output, 'w');
          try {
            const regular = (await fh.stat()).isFile();
            await copyDiskToFile(stack, fh, regular);
          } finally {
            await fh.close();
          }
        } else {
          try {
            await copyDiskToStream(stack, process.stdout);
          } catch (e) {
            // The reader closed the pipe (`dadi cat ... | head`): not an error of ours.
            if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
          }
        }
      } finally {
        await stack.close();
      }
    });
}
