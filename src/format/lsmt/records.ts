/**
 * The 16-byte index record (formats.md §2.5) and the growable struct-of-arrays the decoders fill:
 * records go straight into typed arrays, never one object per record.
 */
import { FormatError } from '../../errors.ts';
import type { SegmentIndex } from './types.ts';

export const RECORD_SIZE = 16;
/** offset == 2^50 − 1 marks an invalid (padding) record. */
export const INVALID_OFFSET = 2 ** 50 - 1;
const TWO32 = 2 ** 32;

/** A SegmentIndex whose arrays may be longer than `count` (capacity grows by doubling). */
export class SegmentArrays implements SegmentIndex {
  count = 0;
  offset: Float64Array;
  length: Uint32Array;
  moffset: Float64Array;
  zeroed: Uint8Array;
  tag: Uint8Array;

  constructor(capacity = 256) {
    const c = Math.max(1, capacity);
    this.offset = new Float64Array(c);
    this.length = new Uint32Array(c);
    this.moffset = new Float64Array(c);
    this.zeroed = new Uint8Array(c);
    this.tag = new Uint8Array(c);
  }

  push(offset: number, length: number, moffset: number, zeroed: number, tag = 0): void {
    if (this.count === this.offset.length) this.grow(this.count * 2);
    const i = this.count++;
    this.offset[i] = offset;
    this.length[i] = length;
    this.moffset[i] = moffset;
    this.zeroed[i] = zeroed;
    this.tag[i] = tag;
  }

  private grow(cap: number): void {
    const o = new Float64Array(cap); o.set(this.offset); this.offset = o;
    const l = new Uint32Array(cap); l.set(this.length); this.length = l;
    const m = new Float64Array(cap); m.set(this.moffset); this.moffset = m;
    const z = new Uint8Array(cap); z.set(this.zeroed); this.zeroed = z;
    const t = new Uint8Array(cap); t.set(this.tag); this.tag = t;
  }

  /** The arrays trimmed to `count` (views, no copy). */
  trimmed(): SegmentIndex {
    const n = this.count;
    return {
      count: n,
      offset: this.offset.subarray(0, n),
      length: this.length.subarray(0, n),
      moffset: this.moffset.subarray(0, n),
      zeroed: this.zeroed.subarray(0, n),
      tag: this.tag.subarray(0, n),
    };
  }
}

export interface DecodeOptions {
  file: string;
  /** File offset of bytes[0], for error messages. */
  base: number;
  /** Keep on-disk tags (warp files, RW logs being inspected); normal readers force 0. */
  keepTags?: boolean;
}

/**
 * Decodes `bytes` (a whole number of records) into `out`, dropping invalid records. Returns for
 * every kept record its record number in `bytes` only when `recordNumbers` is given.
 */
export function decodeRecords(bytes: Uint8Array, out: SegmentArrays, opts: DecodeOptions, recordNumbers?: number[]): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Math.floor(bytes.length / RECORD_SIZE);
  for (let i = 0; i < n; i++) {
    const p = i * RECORD_SIZE;
    const lo0 = dv.getUint32(p, true);
    const hi0 = dv.getUint32(p + 4, true);
    if (lo0 === 0xffffffff && (hi0 & 0x3ffff) === 0x3ffff) continue; // padding record
    const lo1 = dv.getUint32(p + 8, true);
    const hi1 = dv.getUint32(p + 12, true);
    const mhi = hi1 & 0x7fffff;
    if (mhi >= 0x200000) {
      throw new FormatError(opts.file, opts.base + p,
        `index record ${i}: moffset ${(BigInt(mhi) << 32n) | BigInt(lo1)} sectors is beyond 2^53 and cannot be handled`);
    }
    out.push(lo0 + (hi0 & 0x3ffff) * TWO32, hi0 >>> 18, lo1 + mhi * TWO32, (hi1 >>> 23) & 1, opts.keepTags ? hi1 >>> 24 : 0);
    recordNumbers?.push(i);
  }
}

/** Writes one record at `pos` of `dst`. */
export function encodeRecord(dst: DataView, pos: number, offset: number, length: number, moffset: number, zeroed: number, tag: number): void {
  dst.setUint32(pos, offset % TWO32, true);
  dst.setUint32(pos + 4, (Math.floor(offset / TWO32) | (length << 18)) >>> 0, true);
  dst.setUint32(pos + 8, moffset % TWO32, true);
  dst.setUint32(pos + 12, ((Math.floor(moffset / TWO32) & 0x7fffff) | ((zeroed & 1) << 23) | ((tag & 0xff) << 24)) >>> 0, true);
}

export function encodeInvalidRecord(dst: DataView, pos: number): void {
  encodeRecord(dst, pos, INVALID_OFFSET, 0, 0, 0, 0);
}

/** Encodes `idx[from, from+n)` followed by `pad` invalid records. */
export function encodeIndex(idx: SegmentIndex, pad = 0): Uint8Array {
  const out = new Uint8Array((idx.count + pad) * RECORD_SIZE);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < idx.count; i++) {
    encodeRecord(dv, i * RECORD_SIZE, idx.offset[i]!, idx.length[i]!, idx.moffset[i]!, idx.zeroed[i]!, idx.tag[i]!);
  }
  for (let i = idx.count; i < idx.count + pad; i++) encodeInvalidRecord(dv, i * RECORD_SIZE);
  return out;
}
