/**
 * One layer applied without the kernel: the converted lowers plus a new writable layer opened as a
 * Disk in this process, ext4 made on it in userspace for the first layer, and the tar applied by
 * dadi's own ext4 writer. No root, FUSE, loop device, NBD or mount is involved, and everything
 * the writer decides depends only on the lowers and the tar, so the committed blob is the same on
 * every run and machine.
 */
import { Ext4Writer } from '../../fs/ext4/writer.ts';
import { mkfs } from '../../fs/ext4/mkfs.ts';
import { applyLayerTo, type ApplyStats } from '../apply/index.ts';
import { Ext4Target } from '../apply/ext4-target.ts';
import { openLocalImage } from '../local.ts';
import { FS_HASH_SEED, FS_UUID } from './mkfs.ts';
import type { LayerStream } from './store.ts';

/**
 * What identifies the userspace writer's output in the reuse key: bump the version whenever the
 * same input would lay out differently.
 */
export const USERSPACE_FS_ID: readonly string[] = ['dadi-userspace-ext4', '1', FS_UUID, FS_HASH_SEED];

/** The creation time mkfs records (and the root directory's, unless a layer names the root). */
export const FS_TIME = 0;

export interface UserspaceApplyOptions {
  lowers: string[];
  writableDir: string;
  /** Virtual size of the first layer's writable layer (later layers take the lowers'). */
  size?: number;
  mkfs: boolean;
  /** Names the layer in errors (its source digest). */
  name: string;
  open(): LayerStream;
  onProgress?(bytes: number): void;
}

export async function applyUserspace(o: UserspaceApplyOptions): Promise<ApplyStats> {
  const disk = await openLocalImage(o.lowers, { writableDir: o.writableDir, ...(o.size !== undefined ? { size: o.size } : {}) });
  try {
    if (o.mkfs) await mkfs(disk, { size: disk.size, uuid: FS_UUID, hashSeed: FS_HASH_SEED, time: FS_TIME });
    const fs = await Ext4Writer.open(disk, `the image below layer ${o.name}`);
    const blob = o.open();
    let stats: ApplyStats;
    try {
      stats = await applyLayerTo(blob.stream, new Ext4Target(fs), { name: o.name, ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
      await blob.done; // the whole blob matched its digest
    } catch (err) {
      blob.abort();
      throw err;
    }
    await disk.flush();
    return stats;
  } finally {
    await disk.close();
  }
}
