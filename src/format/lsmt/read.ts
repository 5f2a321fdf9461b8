/**
 * Reading a layer's logical bytes through its index: the simple single-layer path that `dadi layer`
 * and the tests use (the stacked, merged path lives in disk/).
 */
import type { ByteSource } from '../../io/types.ts';
import type { ExtentVisitor, SegmentIndex } from './types.ts';

/** Visits the extents of a sorted index intersecting [sector, sector+count), trimmed to it. */
export function lookupIndex(idx: SegmentIndex, sector: number, count: number, visit: ExtentVisitor): void {
  const end = sector + count;
  let lo = 0;
  let hi = idx.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (idx.offset[mid]! + idx.length[mid]! > sector) hi = mid;
    else lo = mid + 1;
  }
  for (let i = lo; i < idx.count; i++) {
    const off = idx.offset[i]!;
    if (off >= end) return;
    const s = Math.max(off, sector);
    const e = Math.min(off + idx.length[i]!, end);
    visit(s, e - s, idx.moffset[i]! + (s - off), idx.zeroed[i]! === 1);
  }
}

export type Lookup = (sector: number, count: number, visit: ExtentVisitor) => void;

/** Fills dst (512-aligned offset and length) with the layer's bytes at byteOffset; gaps read as zeros. */
export async function readLayerBytes(lookup: Lookup, data: ByteSource, dst: Uint8Array, byteOffset: number): Promise<void> {
  dst.fill(0);
  const reads: Promise<number>[] = [];
  const first = byteOffset / 512;
  lookup(first, dst.length / 512, (s, n, moff, zeroed) => {
    if (zeroed) return;
    const view = dst.subarray((s - first) * 512, (s - first + n) * 512);
    reads.push(data.read(view, moff * 512));
  });
  await Promise.all(reads);
}
