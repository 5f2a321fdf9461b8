/**
 * One source layer into one overlaybd layer blob (formats.md §7.7 A steps 2-5): a new writable
 * layer on the converted lowers; the OCI tar applied into it, by the userspace ext4 writer or (the
 * kernel path) through a mount of the stack; then committed
 * into a tar-wrapped ZFile whose UUID is the chainID's and whose parent is the layer below's.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { commitToFile } from '../../format/lsmt/commit-file.ts';
import { appendDigestTable } from '../../format/tar/append-table.ts';
import type { DigestTableRef } from '../../format/tar/digest-table.ts';
import { openWritablePairFiles } from '../../format/lsmt/readonly.ts';
import type { ApplyStats } from '../apply/index.ts';
import { WRITABLE_DATA, WRITABLE_INDEX } from '../local.ts';
import type { ApplyThread } from './apply-thread.ts';
import type { LayerStream } from './store.ts';
import { withMountedStack } from './stack-mount.ts';
import { applyUserspace } from './userspace-apply.ts';

export interface ConvertLayerOptions {
  index: number;
  /** Names the layer in errors (its source digest). */
  name: string;
  lowers: string[];
  /** Virtual size of the image: given to the first layer's writable layer; later layers inherit it from the lowers. */
  vsize: number;
  uuid: string;
  parentUuid?: string;
  /** ZFile algorithm, or 'none' for a plain (uncompressed) LSMT layer. */
  compress: 'lz4' | 'zstd' | 'none';
  blockSize: number;
  /** Scratch directory of this layer (writable layer, mount point, logs, output). */
  workDir: string;
  /** Apply through a kernel mount (root, FUSE, loop) instead of the userspace ext4 writer. */
  kernel: boolean;
  /** The thread that applies the tar on the kernel path (started early by the caller, reused across layers). */
  applier?: ApplyThread;
  open(): LayerStream;
  onApplyProgress?(bytes: number): void;
  onStep?(step: 'mount' | 'apply' | 'unmount' | 'commit'): void;
}

export interface ConvertedLayer { path: string; digest: string; size: number; table: DigestTableRef; apply: ApplyStats }

/** A layer applied into its writable layer (`rw`), not yet committed. */
export interface AppliedLayer { rw: string; apply: ApplyStats; lowerSpec: string }

/** Applies the layer into a new writable layer on the lowers; commitLayer() then makes its blob. */
export async function applyLayerStage(o: ConvertLayerOptions): Promise<AppliedLayer> {
  const rw = join(o.workDir, 'rw');
  await mkdir(rw, { recursive: true });
  if (!o.kernel) o.onStep?.('apply');
  const apply = o.kernel ? await applyMounted(o, rw) : await applyUserspace({
    lowers: o.lowers, writableDir: rw, mkfs: o.index === 0, name: o.name, open: o.open,
    ...(o.index === 0 ? { size: o.vsize } : {}), ...(o.onApplyProgress ? { onProgress: o.onApplyProgress } : {}),
  });
  // The writable pair reads as a lower layer as it is, so the next layer need not wait for the commit.
  return { rw, apply, lowerSpec: `${join(rw, WRITABLE_DATA)},${join(rw, WRITABLE_INDEX)}` };
}

async function applyMounted(o: ConvertLayerOptions, rw: string): Promise<ApplyStats> {
  const mnt = join(o.workDir, 'mnt');
  await mkdir(mnt, { recursive: true });
  const applier = o.applier;
  if (!applier) throw new Error('convertLayer: the kernel path needs an ApplyThread');
  o.onStep?.('mount');
  const apply = await withMountedStack({
    lowers: o.lowers, writableDir: rw, mkfs: o.index === 0, mountPoint: mnt, workDir: o.workDir,
    ...(o.index === 0 ? { size: o.vsize } : {}),
  }, async (dir) => {
    o.onStep?.('apply');
    const blob = o.open();
    try {
      const stats = await applier.apply(blob.stream, dir, { name: o.name, ...(o.onApplyProgress ? { onProgress: o.onApplyProgress } : {}) });
      await blob.done; // the whole blob matched its digest
      o.onStep?.('unmount');
      return stats;
    } catch (err) {
      blob.abort();
      throw err;
    }
  });
  return apply;
}

export async function commitLayer(o: ConvertLayerOptions, rw: string, apply: ApplyStats): Promise<ConvertedLayer> {
  o.onStep?.('commit');
  const out = join(o.workDir, 'overlaybd.commit');
  // The data file reads synchronously, so commit gathers extents without the thread pool.
  const src = await openWritablePairFiles(join(rw, WRITABLE_DATA), join(rw, WRITABLE_INDEX));
  try {
    await commitToFile({ index: src.index, data: src.data, virtualSize: src.virtualSize || o.vsize, parentUuid: src.parentUuid }, out, {
      ...(o.compress === 'none' ? {} : { compress: o.compress }), blockSize: o.blockSize, checksum: true, tar: true, uuid: o.uuid,
      ...(o.parentUuid ? { parentUuid: o.parentUuid } : {}),
    });
  } finally {
    await src.close();
  }
  // The tar wrapper and ZFile header are rewritten in place at close, so the chunk digest table
  // and the blob digest are taken from the finished file (still in the page cache) in one pass.
  const { digest, size, table } = await appendDigestTable(out);
  return { path: out, digest, size, table, apply };
}
