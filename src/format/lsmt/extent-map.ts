/**
 * The RW level-0 index (formats.md §2.10): an ordered set of non-overlapping extents where an
 * insert cuts whatever it overlaps, so later writes win. Stored as a list of chunks of at most
 * CHUNK entries in typed arrays: an insert touches one or two chunks (O(log n + CHUNK)), so a
 * 50,000-write log replays without splicing big arrays.
 */
import { SegmentArrays } from './records.ts';
import type { ExtentVisitor, SegmentIndex } from './types.ts';

const DEFAULT_CHUNK = 512;

class Chunk {
  n = 0;
  readonly off: Float64Array;
  readonly len: Uint32Array;
  readonly moff: Float64Array;
  readonly zero: Uint8Array;

  constructor(readonly capacity: number) {
    this.off = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
    this.moff = new Float64Array(capacity);
    this.zero = new Uint8Array(capacity);
  }

  end(i: number): number {
    return this.off[i]! + this.len[i]!;
  }

  /** Opens a hole of one entry at i (the caller guarantees room). */
  openAt(i: number): void {
    if (i < this.n) {
      this.off.copyWithin(i + 1, i, this.n);
      this.len.copyWithin(i + 1, i, this.n);
      this.moff.copyWithin(i + 1, i, this.n);
      this.zero.copyWithin(i + 1, i, this.n);
    }
    this.n++;
  }

  removeRange(i: number, k: number): void {
    this.off.copyWithin(i, i + k, this.n);
    this.len.copyWithin(i, i + k, this.n);
    this.moff.copyWithin(i, i + k, this.n);
    this.zero.copyWithin(i, i + k, this.n);
    this.n -= k;
  }

  set(i: number, off: number, len: number, moff: number, zero: number): void {
    this.off[i] = off;
    this.len[i] = len;
    this.moff[i] = moff;
    this.zero[i] = zero;
  }

  /** Moves entries [from, n) into a new chunk. */
  splitFrom(from: number): Chunk {
    const c = new Chunk(this.capacity);
    c.off.set(this.off.subarray(from, this.n));
    c.len.set(this.len.subarray(from, this.n));
    c.moff.set(this.moff.subarray(from, this.n));
    c.zero.set(this.zero.subarray(from, this.n));
    c.n = this.n - from;
    this.n = from;
    return c;
  }
}

export class ExtentMap {
  private readonly chunks: Chunk[];
  private total = 0;

  /** `chunkSize` is only lowered by tests, to exercise the multi-chunk paths with few extents. */
  constructor(private readonly chunkSize = DEFAULT_CHUNK) {
    if (chunkSize < 2) throw new RangeError('chunk size must be at least 2');
    this.chunks = [new Chunk(chunkSize)];
  }

  get count(): number {
    return this.total;
  }

  /** Chunk index of the first chunk whose last extent ends after `sector` (chunks.length if none). */
  private chunkFor(sector: number): number {
    let lo = 0;
    let hi = this.chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.chunks[mid]!;
      if (c.n > 0 && c.end(c.n - 1) > sector) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** First entry in chunk c whose end is after `sector`. */
  private static entryFor(c: Chunk, sector: number): number {
    let lo = 0;
    let hi = c.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c.end(mid) > sector) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Inserts [offset, offset+length) → moffset (or zeroed), cutting what it overlaps. */
  insert(offset: number, length: number, moffset: number, zeroed: number): void {
    if (length <= 0) return;
    const end = offset + length;
    let ci = this.chunkFor(offset);
    if (ci === this.chunks.length) {
      // Past every extent: append to the last chunk.
      ci = this.chunks.length - 1;
      this.insertAt(ci, this.chunks[ci]!.n, offset, length, moffset, zeroed);
      return;
    }
    let c = this.chunks[ci]!;
    let i = ExtentMap.entryFor(c, offset);
    // The first overlapping extent may start before the new one: keep its head.
    if (c.off[i]! < offset) {
      const eOff = c.off[i]!;
      const eEnd = c.end(i);
      if (eEnd > end) {
        // The new extent falls inside: split into head, new, tail.
        const delta = end - eOff;
        // Upstream `forward_offset_to` moves moffset for data extents only.
        const tailMoff = c.zero[i] ? c.moff[i]! : c.moff[i]! + delta;
        const tailZero = c.zero[i]!;
        c.len[i] = offset - eOff;
        // Insert the new extent, then the tail right after wherever it landed (a chunk may split).
        this.insertAt(ci, i + 1, offset, length, moffset, zeroed);
        this.insertAt(this.lastChunk, this.lastEntry + 1, end, eEnd - end, tailMoff, tailZero);
        return;
      }
      c.len[i] = offset - eOff;
      i++;
    }
    // Remove every extent lying entirely inside [offset, end); they may span chunks.
    for (;;) {
      if (i === c.n) {
        if (ci + 1 >= this.chunks.length) break;
        ci++; c = this.chunks[ci]!; i = 0;
        continue;
      }
      let k = 0;
      while (i + k < c.n && c.end(i + k) <= end) k++;
      if (k > 0) {
        c.removeRange(i, k);
        this.total -= k;
        if (c.n === 0 && this.chunks.length > 1) {
          this.chunks.splice(ci, 1);
          if (ci === this.chunks.length) { ci--; c = this.chunks[ci]!; i = c.n; break; }
          c = this.chunks[ci]!; i = 0;
          continue;
        }
      }
      // Removed up to the chunk's end: the next chunk may hold more covered extents.
      if (i < c.n) break;
    }
    // An extent that starts inside and ends after loses its head.
    if (i < c.n && c.off[i]! < end) {
      const delta = end - c.off[i]!;
      c.off[i] = end;
      c.len[i] = c.len[i]! - delta;
      if (!c.zero[i]) c.moff[i] = c.moff[i]! + delta;
    }
    this.insertAt(ci, i, offset, length, moffset, zeroed);
  }

  /** Where the last insertAt put its entry. */
  private lastChunk = 0;
  private lastEntry = 0;

  private insertAt(ci: number, i: number, off: number, len: number, moff: number, zero: number): void {
    let c = this.chunks[ci]!;
    if (c.n === this.chunkSize) {
      const half = this.chunkSize >>> 1;
      const right = c.splitFrom(half);
      this.chunks.splice(ci + 1, 0, right);
      if (i > half) { c = right; i -= half; ci++; }
    }
    c.openAt(i);
    c.set(i, off, len, moff, zero);
    this.total++;
    this.lastChunk = ci;
    this.lastEntry = i;
  }

  /** Visits the extents intersecting [sector, sector+count), trimmed to it, in LBA order. */
  lookup(sector: number, count: number, visit: ExtentVisitor): void {
    const end = sector + count;
    for (let ci = this.chunkFor(sector); ci < this.chunks.length; ci++) {
      const c = this.chunks[ci]!;
      for (let i = ExtentMap.entryFor(c, sector); i < c.n; i++) {
        const off = c.off[i]!;
        if (off >= end) return;
        const s = Math.max(off, sector);
        const e = Math.min(c.end(i), end);
        const z = c.zero[i]! === 1;
        visit(s, e - s, c.moff[i]! + (s - off), z);
      }
    }
  }

  /** A sorted snapshot of every extent (tags 0 unless given). */
  toIndex(tag = 0): SegmentIndex {
    const out = new SegmentArrays(this.total);
    for (const c of this.chunks) {
      for (let i = 0; i < c.n; i++) out.push(c.off[i]!, c.len[i]!, c.moff[i]!, c.zero[i]!, tag);
    }
    return out.trimmed();
  }
}
