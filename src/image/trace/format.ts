/**
 * overlaybd's trace file (formats.md §7.8, `obd:src/prefetch.cpp`), so a trace recorded by dadi
 * replays under overlaybd and the other way round: a 24-byte header (magic 0xC2EF1820, data
 * size, raw CRC32C chained over the records as stored) and 24-byte records (op, layer index,
 * byte count, byte offset in the layer file), native little-endian with C struct padding.
 *
 * The record padding is not guaranteed zero in files written by overlaybd, so the reader checks
 * the CRC over the bytes as stored and never rewrites them; the writer zeroes it.
 */
import { FormatError } from '../../errors.ts';
import { crc32c } from '../../format/crc32c.ts';

export const TRACE_MAGIC = 0xc2ef1820;
export const TRACE_HEADER_SIZE = 24;
export const TRACE_RECORD_SIZE = 24;
const OP_READ = 0x52; // 'R'
const OP_WRITE = 0x57; // 'W'

export interface TraceRecord {
  op: 'R' | 'W';
  /** Position in the image's lowers, 0 = bottom. */
  layer: number;
  /** Byte offset in the layer file (the layer's uncompressed LSMT byte space). */
  offset: number;
  /** Bytes. */
  length: number;
}

/** Whether `head` starts with the trace magic (otherwise a non-empty trace path holds a file list). */
export function isTraceFile(head: Uint8Array): boolean {
  return head.length >= 4 && new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(0, true) === TRACE_MAGIC;
}

export function encodeTrace(records: readonly TraceRecord[]): Uint8Array {
  const out = new Uint8Array(TRACE_HEADER_SIZE + TRACE_RECORD_SIZE * records.length);
  const dv = new DataView(out.buffer);
  for (const [i, r] of records.entries()) {
    const at = TRACE_HEADER_SIZE + TRACE_RECORD_SIZE * i;
    if (!Number.isInteger(r.layer) || r.layer < 0 || r.layer > 0xffffffff) throw new RangeError(`trace record ${i}: layer index ${r.layer} is not a u32`);
    if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw new RangeError(`trace record ${i}: bad offset ${r.offset}`);
    if (!Number.isSafeInteger(r.length) || r.length < 0) throw new RangeError(`trace record ${i}: bad length ${r.length}`);
    out[at] = r.op === 'W' ? OP_WRITE : OP_READ;
    dv.setUint32(at + 4, r.layer, true);
    dv.setBigUint64(at + 8, BigInt(r.length), true);
    dv.setBigUint64(at + 16, BigInt(r.offset), true);
  }
  dv.setUint32(0, TRACE_MAGIC, true);
  dv.setBigUint64(8, BigInt(TRACE_RECORD_SIZE * records.length), true);
  dv.setUint32(16, crc32c(out.subarray(TRACE_HEADER_SIZE), 0), true);
  return out;
}

/** Parses a trace file; `name` (its path) names the problem in errors. */
export function decodeTrace(buf: Uint8Array, name = 'trace'): TraceRecord[] {
  if (buf.length < TRACE_HEADER_SIZE) throw new FormatError(name, 0, `trace file is ${buf.length} bytes, shorter than its ${TRACE_HEADER_SIZE}-byte header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== TRACE_MAGIC) throw new FormatError(name, 0, `not a trace file: magic 0x${magic.toString(16)}, expected 0x${TRACE_MAGIC.toString(16)}`);
  const dataSize = dv.getBigUint64(8, true);
  if (dataSize !== BigInt(buf.length - TRACE_HEADER_SIZE)) {
    throw new FormatError(name, 8, `trace data_size ${dataSize} does not match the file: ${buf.length} bytes = ${TRACE_HEADER_SIZE} + ${buf.length - TRACE_HEADER_SIZE}`);
  }
  if (dataSize % BigInt(TRACE_RECORD_SIZE) !== 0n) throw new FormatError(name, 8, `trace data_size ${dataSize} is not a multiple of ${TRACE_RECORD_SIZE}`);
  const stored = dv.getUint32(16, true);
  const computed = crc32c(buf.subarray(TRACE_HEADER_SIZE), 0);
  if (stored !== computed) throw new FormatError(name, 16, `trace checksum mismatch: stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
  const count = Number(dataSize) / TRACE_RECORD_SIZE;
  const out: TraceRecord[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = TRACE_HEADER_SIZE + TRACE_RECORD_SIZE * i;
    const op = buf[at];
    if (op !== OP_READ && op !== OP_WRITE) throw new FormatError(name, at, `trace record ${i}: op 0x${op!.toString(16)}, expected 'R' or 'W'`);
    const length = dv.getBigUint64(at + 8, true);
    const offset = dv.getBigUint64(at + 16, true);
    if (length > BigInt(Number.MAX_SAFE_INTEGER) || offset > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(name, at, `trace record ${i}: offset ${offset} or count ${length} is out of range`);
    }
    out[i] = { op: op === OP_WRITE ? 'W' : 'R', layer: dv.getUint32(at + 4, true), offset: Number(offset), length: Number(length) };
  }
  return out;
}
