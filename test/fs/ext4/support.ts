/**
 * Plumbing of the ext4 tests: a disk's written bytes copied into a sparse image file (so e2fsck,
 * dumpe2fs, debugfs and the kernel can look at it), and e2fsck's verdict.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { open } from 'node:fs/promises';
import type { Disk } from '../../../src/io/types.ts';

/** Writes every allocated run of `disk` into `file` (created sparse at the disk's size). */
export async function diskToImage(disk: Disk, file: string): Promise<void> {
  if (!disk.extents) throw new Error('the disk reports no allocation map');
  const fh = await open(file, 'w');
  try {
    await fh.truncate(disk.size);
    for (let at = 0; at < disk.size;) {
      const runs = await disk.extents(at, disk.size - at);
      for (const r of runs) {
        if (!r.hole) {
          for (let off = r.offset; off < r.offset + r.length; off += 1 << 22) {
            const buf = new Uint8Array(Math.min(1 << 22, r.offset + r.length - off));
            await disk.read(buf, off);
            await fh.write(buf, 0, buf.length, off);
          }
        }
        at = r.offset + r.length;
      }
    }
  } finally {
    await fh.close();
  }
}

/** `e2fsck -fn` on the image: asserts a clean file system, showing e2fsck's report otherwise. */
export function assertFsckClean(file: string): string {
  const r = spawnSync('e2fsck', ['-fn', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `e2fsck -fn found problems (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
