/**
 * `dadi layer create|commit|seal|info`: the writable layer's life cycle (create, commit into a
 * read-only layer blob, seal in place) and a look inside any layer file.
 */
import type { Command } from 'commander';
import type { LsmtLayer } from '../../format/lsmt/readonly.ts';
import { required } from '../required.ts';

interface CommitCliOptions {
  compress?: string;
  blockSize: string;
  checksum: boolean;
  tar?: boolean;
  digestTable?: boolean;
  uuid?: string;
  parentUuid?: string;
  message?: string;
}

async function commitFrom(src: LsmtLayer, from: string, out: string, opts: CommitCliOptions): Promise<void> {
  const { parseSize } = await import('../../util/size.ts');
  const { commitToFile } = await import('../../format/lsmt/commit-file.ts');
  const { isNullUuid } = await import('../../format/lsmt/header.ts');
  try {
    if (opts.compress !== undefined && opts.compress !== 'lz4' && opts.compress !== 'zstd') {
      throw new Error(`--compress must be lz4 or zstd, got ${opts.compress}`);
    }
    if (opts.digestTable && !opts.tar) throw new Error('--digest-table needs --tar: the table is a tar member after the layer');
    const blockSize = parseSize(opts.blockSize);
    if (![4096, 8192, 16384, 32768, 65536].includes(blockSize)) {
      throw new Error(`--block-size must be 4K, 8K, 16K, 32K or 64K, got ${opts.blockSize}`);
    }
    // The layer keeps the identity it was created with (uuid, parent, size) unless told otherwise.
    const uuid = opts.uuid === 'null' ? undefined : opts.uuid ?? (isNullUuid(src.uuid) ? undefined : src.uuid);
    const res = await commitToFile(
      { index: src.index, data: src.data, virtualSize: src.virtualSize, parentUuid: src.parentUuid }, out,
      { compress: opts.compress as 'lz4' | 'zstd' | undefined, blockSize, checksum: opts.checksum, tar: opts.tar === true,
        uuid, parentUuid: opts.parentUuid, message: opts.message });
    process.stdout.write(`committed ${from} to ${out}: ${res.records} segments, ${res.dataBytes} data bytes, ${res.bytes} LSMT bytes; ` +
      `uuid ${uuid ?? 'null'}, parent ${opts.parentUuid ?? (isNullUuid(src.parentUuid) ? 'null' : src.parentUuid)}, virtual size ${src.virtualSize}\n`);
    if (opts.digestTable) {
      const { appendDigestTable } = await import('../../format/tar/append-table.ts');
      const { Annotation, overlaybdLayerAnnotations } = await import('../../image/annotations.ts');
      const sealed = await appendDigestTable(out);
      const a = overlaybdLayerAnnotations(sealed.digest, sealed.size, { verifyTable: sealed.table });
      process.stdout.write(`digest table appended: blob ${sealed.digest}, ${sealed.size} bytes; layer annotation ${Annotation.verifyTable}=${a[Annotation.verifyTable]}\n`);
    }
  } finally {
    await src.close();
  }
}

export function register(program: Command): void {
  const layer = program.command('layer').description('create, commit, seal and inspect LSMT layers');

  layer
    .command('create')
    .description('create an empty writable layer (append-only data file + index log)')
    .argument('<data>', 'data file to create')
    .argument('<index>', 'index file to create')
    .option('--size <size>', 'virtual disk size (required), e.g. 64G (0: take the size of the layers below)')
    .option('--uuid <uuid>', 'layer UUID (default: random)')
    .option('--parent-uuid <uuid>', 'UUID of the layer below')
    .action(async (data: string, index: string, opts: { size?: string; uuid?: string; parentUuid?: string }) => {
      const { parseSize } = await import('../../util/size.ts');
      const { createWritableLayer } = await import('../../format/lsmt/writable.ts');
      const l = await createWritableLayer(data, index, { virtualSize: parseSize(required(opts.size, '--size')), uuid: opts.uuid, parentUuid: opts.parentUuid });
      await l.close();
      process.stdout.write(`created writable layer ${data} + ${index}: ${l.virtualSize} bytes, uuid ${l.uuid}\n`);
    });

  const commitOptions = (c: Command): Command => c
    .option('--compress <algo>', 'ZFile-compress the output: lz4 or zstd')
    .option('--block-size <size>', 'ZFile block size: 4K, 8K, 16K, 32K or 64K', '4K')
    .option('--no-checksum', 'ZFile without per-block CRCs')
    .option('--tar', 'wrap the output in a one-member tar, as registries expect')
    .option('--digest-table', 'with --tar: append the chunk digest table member (as dadi convert does) and print the layer annotation that names it')
    .option('--uuid <uuid>', 'UUID of the new layer (default: the source layer\'s own; "null" for none, as overlaybd-commit writes)')
    .option('--parent-uuid <uuid>', 'parent UUID (default: copied from the source layer)')
    .option('-m, --message <text>', 'commit message stored in the header (at most 256 bytes)');

  commitOptions(layer
    .command('commit')
    .description('compact a writable layer into a read-only layer blob (optionally ZFile-compressed and tar-wrapped)')
    .argument('<data>', 'writable layer data file')
    .argument('<index>', 'writable layer index file')
    .argument('<out>', 'output layer file'))
    .action(async (data: string, index: string, out: string, opts: CommitCliOptions) => {
      const { openWritablePairFiles } = await import('../../format/lsmt/readonly.ts');
      // The data file reads synchronously, so commit gathers extents without the thread pool.
      const src = await openWritablePairFiles(data, index);
      await commitFrom(src, data, out, opts);
    });

  commitOptions(layer
    .command('commit-sealed')
    .description('compact a sealed writable layer (see `dadi layer seal`) into a read-only layer blob')
    .argument('<sealed>', 'sealed data file')
    .argument('<out>', 'output layer file'))
    .action(async (sealed: string, out: string, opts: CommitCliOptions) => {
      const { FileSource } = await import('../../io/file.ts');
      const { openReadOnlyLayer } = await import('../../format/lsmt/readonly.ts');
      const src = await openReadOnlyLayer(await FileSource.open(sealed), sealed);
      if (src.kind !== 'sealed') {
        await src.close();
        throw new Error(`${sealed} is a ${src.kind} layer, not a sealed writable layer`);
      }
      await commitFrom(src, sealed, out, opts);
    });

  layer
    .command('seal')
    .description('seal a writable layer in place: append its index and a trailer to the data file (no compaction)')
    .argument('<data>', 'writable layer data file (becomes a read-only layer)')
    .argument('<index>', 'writable layer index file')
    .action(async (data: string, index: string) => {
      const { sealLayer } = await import('../../format/lsmt/seal.ts');
      const res = await sealLayer(data, index);
      process.stdout.write(`sealed ${data}: ${res.records} segments, index at ${res.indexOffset}, ${res.fileSize} bytes\n`);
    });

  layer
    .command('info')
    .description('show a layer\'s kind, wrappers (tar, ZFile), header, uuids, segments and sizes')
    .argument('<file>', 'layer file (plain, ZFile, tar-wrapped, sealed) or a writable data file with --index')
    .option('--index <index>', 'the index file, when FILE is a writable layer data file')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { index?: string; json?: boolean }) => {
      const { stat } = await import('node:fs/promises');
      const { FileSource } = await import('../../io/file.ts');
      const { openLayer, openWritablePairReadOnly } = await import('../../format/open-layer.ts');
      const { describeLayer, formatLayerInfo } = await import('../../format/lsmt/info.ts');
      const fileSize = (await stat(file)).size;
      const opened = opts.index
        ? { layer: await openWritablePairReadOnly(await FileSource.open(file), await FileSource.open(opts.index), file), wrappers: [] }
        : await openLayer(file).then((l) => ({ layer: l, wrappers: l.wrappers }));
      try {
        const info = describeLayer(file, opened.layer, fileSize, opened.wrappers);
        process.stdout.write(opts.json ? JSON.stringify(info, null, 2) + '\n' : formatLayerInfo(info));
      } finally {
        await opened.layer.close();
      }
    });
}
