/**
 * `dadi zfile compress|decompress`: convert between plain bytes and the ZFile format
 * (independently compressed blocks with CRCs and a jump table), optionally tar-wrapped.
 */
import type { Command } from 'commander';

interface CompressCliOptions { algo: string; blockSize: string; checksum: boolean; tar?: boolean }

export function register(program: Command): void {
  const zfile = program.command('zfile').description('compress to / decompress from the ZFile format');
  zfile
    .command('compress')
    .description('compress a file into a ZFile (blocks compressed independently, CRC per block)')
    .argument('<in>', 'input file, or - for stdin')
    .argument('<out>', 'output ZFile, or - for stdout')
    .option('--algo <algo>', 'lz4 or zstd', 'lz4')
    .option('--block-size <size>', 'uncompressed block size: 4K, 8K, 16K, 32K or 64K', '4K')
    .option('--no-checksum', 'do not store a CRC after each block')
    .option('--tar', 'wrap the ZFile in a one-member tar (overlaybd.commit), as registries expect; needs a file output')
    .addHelpText('after', '\nExamples:\n  dadi zfile compress layer.lsmt layer.zfile --algo zstd\n  dadi zfile compress - out.zfile < data.img')
    .action(async (input: string, output: string, opts: CompressCliOptions) => {
      const { parseSize } = await import('../../util/size.ts');
      const { compressFile } = await import('../../format/zfile/files.ts');
      if (opts.algo !== 'lz4' && opts.algo !== 'zstd') throw new Error(`--algo must be lz4 or zstd, got ${opts.algo}`);
      const blockSize = parseSize(opts.blockSize);
      if (![4096, 8192, 16384, 32768, 65536].includes(blockSize)) {
        throw new Error(`--block-size must be 4K, 8K, 16K, 32K or 64K, got ${opts.blockSize}`);
      }
      await compressFile(input, output, { algo: opts.algo, blockSize, checksum: opts.checksum, tar: opts.tar === true });
    });
  zfile
    .command('decompress')
    .description('decompress a ZFile (raw or tar-wrapped, detected) back to its bytes, checking block CRCs')
    .argument('<in>', 'input ZFile, or - for stdin')
    .argument('<out>', 'output file, or - for stdout')
    .option('--verify', 'fail unless the file carries per-block CRCs (they are always checked when present)')
    .action(async (input: string, output: string, opts: { verify?: boolean }) => {
      const { decompressFile } = await import('../../format/zfile/files.ts');
      await decompressFile(input, output, { verify: opts.verify === true });
    });
}
