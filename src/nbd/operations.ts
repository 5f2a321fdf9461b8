/**
 * The NBD commands that are more than one Disk call: sparse structured reads (data and hole
 * chunks from the disk's extents), block status for base:allocation, zero writes, and cache.
 */
import { canReadMapped, hasExtents, type Disk, type DiskExtent } from '../io/types.ts';
import type { BufferPool } from './buffer-pool.ts';
import * as P from './protocol.ts';
import { writeChunkHeader, writeU64 } from './replies.ts';

/** Most descriptors one BLOCK_STATUS reply carries; the client asks again for the rest. */
const MAX_DESCRIPTORS = 8192;
/** Zero runs shorter than this go out as data: a hole chunk would cost more than it saves. */
const MIN_HOLE = 4096;
const ZERO_STEP = 1024 * 1024;
const zeros = Buffer.alloc(ZERO_STEP);

/** Runs of [offset, offset+length) that read as zeros (true) or not (false), clipped and merged. */
function zeroRuns(extents: DiskExtent[], offset: number, length: number): Array<[number, number, boolean]> {
  const end = offset + length;
  const runs: Array<[number, number, boolean]> = [];
  let at = offset;
  for (const e of extents) {
    const s = Math.max(e.offset, at);
    const t = Math.min(e.offset + e.length, end);
    if (s !== at || t <= s) { if (t <= at) continue; break; }
    const last = runs[runs.length - 1];
    if (last && last[2] === e.zero) last[1] += t - s;
    else runs.push([s, t - s, e.zero]);
    at = t;
    if (at >= end) break;
  }
  if (at < end) runs.push([at, end - at, false]);
  return runs;
}

/**
 * Reads [offset, offset+data.length) into `data` and returns the structured reply chunks for it:
 * OFFSET_DATA chunks referencing `data`, OFFSET_HOLE chunks for zero runs, and a final NONE chunk
 * with DONE. The data chunks are views, not copies.
 */
export async function sparseRead(disk: Disk, data: Buffer, offset: number, hi: number, lo: number): Promise<Buffer[]> {
  let extents: DiskExtent[];
  if (canReadMapped(disk)) {
    extents = await disk.readMapped(data, offset);
  } else if (hasExtents(disk)) {
    extents = await disk.extents(offset, data.length);
    await disk.read(data, offset);
  } else {
    extents = [];
    await disk.read(data, offset);
  }
  // Short zero runs go out as data (a hole chunk would cost more than it saves); then merge.
  const runs: Array<[number, number, boolean]> = [];
  for (const [start, length, zero] of zeroRuns(extents, offset, data.length)) {
    const hole = zero && length >= MIN_HOLE;
    const last = runs[runs.length - 1];
    if (last && last[2] === hole) last[1] += length;
    else runs.push([start, length, hole]);
  }
  const chunks: Buffer[] = [];
  for (const [start, length, hole] of runs) {
    if (hole) {
      const c = Buffer.allocUnsafe(32);
      writeChunkHeader(c, 0, 0, P.REPLY_TYPE_OFFSET_HOLE, hi, lo, 12);
      writeU64(c, 20, start);
      c.writeUInt32BE(length, 28);
      chunks.push(c);
    } else {
      const c = Buffer.allocUnsafe(28);
      writeChunkHeader(c, 0, 0, P.REPLY_TYPE_OFFSET_DATA, hi, lo, 8 + length);
      writeU64(c, 20, start);
      chunks.push(c, data.subarray(start - offset, start - offset + length));
    }
  }
  const done = Buffer.allocUnsafe(20);
  writeChunkHeader(done, 0, P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE, hi, lo, 0);
  chunks.push(done);
  return chunks;
}

/** The BLOCK_STATUS reply chunk (with DONE) for base:allocation over [offset, offset+length). */
export async function blockStatus(disk: Disk, offset: number, length: number, reqOne: boolean, hi: number, lo: number): Promise<Buffer> {
  const descriptors: Array<[number, number]> = [];
  if (hasExtents(disk)) {
    const end = offset + length;
    let at = offset;
    for (const e of await disk.extents(offset, length)) {
      const s = Math.max(e.offset, at);
      const t = Math.min(e.offset + e.length, end);
      if (t <= at) continue;
      if (s !== at) break; // a gap: report what is known, the client asks again
      const flags = (e.hole ? P.STATE_HOLE : 0) | (e.zero ? P.STATE_ZERO : 0);
      const last = descriptors[descriptors.length - 1];
      if (last && last[1] === flags && last[0] + (t - s) <= 0xffffffff) last[0] += t - s;
      else descriptors.push([t - s, flags]);
      at = t;
      if (at >= end || descriptors.length > MAX_DESCRIPTORS) break;
    }
  }
  if (descriptors.length === 0) descriptors.push([length, 0]);
  const count = reqOne ? 1 : Math.min(descriptors.length, MAX_DESCRIPTORS);
  const out = Buffer.allocUnsafe(24 + 8 * count);
  writeChunkHeader(out, 0, P.REPLY_FLAG_DONE, P.REPLY_TYPE_BLOCK_STATUS, hi, lo, 4 + 8 * count);
  out.writeUInt32BE(P.META_BASE_ALLOCATION_ID, 20);
  for (let i = 0; i < count; i++) {
    out.writeUInt32BE(descriptors[i]![0], 24 + 8 * i);
    out.writeUInt32BE(descriptors[i]![1], 28 + 8 * i);
  }
  return out;
}

/** WRITE_ZEROES with NO_HOLE: the range must stay allocated, so zeros are written, not trimmed. */
export async function writeZeroes(disk: Disk, offset: number, length: number): Promise<void> {
  for (let at = 0; at < length; at += ZERO_STEP) {
    await disk.write(zeros.subarray(0, Math.min(ZERO_STEP, length - at)), offset + at);
  }
}

/** CACHE: read the range through the disk so lower caches fill; the bytes are dropped. */
export async function cacheRange(disk: Disk, pool: BufferPool, offset: number, length: number): Promise<void> {
  const step = Math.min(length, 1024 * 1024);
  const buf = pool.acquire(step);
  try {
    for (let at = 0; at < length; at += step) {
      await disk.read(buf.subarray(0, Math.min(step, length - at)), offset + at);
    }
  } finally {
    pool.release(buf);
  }
}
