/**
 * The 512-byte ZFile header/trailer (formats.md §3.2–§3.5): parse with the tolerance old files
 * need (single flag bits only; digest only when CALC_DIGEST is set) and build for the writer.
 */
import { FormatError } from '../../errors.ts';
import { crc32c } from '../crc32c.ts';

export const HT_SIZE = 512;
export const HT_STRUCT_SIZE = 96;
export const MAX_BLOCK_SIZE = 65536;
export const MAX_INDEX_SIZE = 1_000_000_000;

export const FLAG_HEADER = 1 << 0;
export const FLAG_TYPE_DATA = 1 << 1;
export const FLAG_SEALED = 1 << 2;
export const FLAG_HEADER_OVERWRITE = 1 << 3;
export const FLAG_CALC_DIGEST = 1 << 4;

export const ALGO_LZ4 = 1;
export const ALGO_ZSTD = 2;
export type ZFileAlgo = 'lz4' | 'zstd';

const MAGIC0 = [0x5a, 0x46, 0x69, 0x6c, 0x65, 0x00, 0x01, 0x00];
const MAGIC1 = new TextEncoder().encode('tuji.yyf@Alibaba');

export interface HeaderTrailer {
  /** Low 32 bits of the u64 flags; old files carry garbage above bit 5, so test single bits. */
  flags: number;
  digest: number;
  indexOffset: number;
  indexSize: number;
  originalSize: number;
  indexCrc: number;
  blockSize: number;
  algo: number;
  dictSize: number;
  verify: boolean;
}

export function hasMagic(b: Uint8Array): boolean {
  if (b.length < 24) return false;
  for (let i = 0; i < 8; i++) if (b[i] !== MAGIC0[i]) return false;
  for (let i = 0; i < 16; i++) if (b[8 + i] !== MAGIC1[i]) return false;
  return true;
}

/** CRC of all 512 bytes with the digest field (bytes 28–31) taken as zero, start 0. */
export function headerDigest(block: Uint8Array): number {
  const head = crc32c(block.subarray(0, 28), 0);
  const zeroed = crc32c(ZERO4, head);
  return crc32c(block.subarray(32, HT_SIZE), zeroed);
}
const ZERO4 = new Uint8Array(4);

function u64(dv: DataView, off: number, file: string, base: number, what: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(file, base + off, `${what} ${v} is out of range`);
  return Number(v);
}

/**
 * Parses one 512-byte block read at `base` of `file`; checks the magics, and the digest when
 * CALC_DIGEST is set. Field plausibility is the caller's job (it depends on which block is trusted).
 */
export function parseHeaderTrailer(block: Uint8Array, file: string, base: number, what: string): HeaderTrailer {
  if (block.length < HT_SIZE) throw new FormatError(file, base, `${what}: truncated (${block.length} of ${HT_SIZE} bytes)`);
  if (!hasMagic(block)) throw new FormatError(file, base, `${what}: bad ZFile magic`);
  const dv = new DataView(block.buffer, block.byteOffset, HT_SIZE);
  const flags = dv.getUint32(32, true);
  const digest = dv.getUint32(28, true);
  if (flags & FLAG_CALC_DIGEST) {
    const want = headerDigest(block);
    if (want !== digest) {
      throw new FormatError(file, base + 28,
        `${what}: digest mismatch (stored 0x${hex(digest)}, computed 0x${hex(want)})`);
    }
  }
  return {
    flags,
    digest,
    indexOffset: u64(dv, 40, file, base, `${what} index_offset`),
    indexSize: u64(dv, 48, file, base, `${what} index_size`),
    originalSize: u64(dv, 56, file, base, `${what} original_file_size`),
    indexCrc: dv.getUint32(64, true),
    blockSize: dv.getUint32(72, true),
    algo: block[76]!,
    dictSize: dv.getUint32(84, true),
    verify: block[88] === 1,
  };
}

export function algoName(algo: number): ZFileAlgo | undefined {
  return algo === ALGO_LZ4 ? 'lz4' : algo === ALGO_ZSTD ? 'zstd' : undefined;
}

export interface BuildFields {
  flags: number;
  indexOffset: number;
  indexSize: number;
  originalSize: number;
  indexCrc: number;
  blockSize: number;
  algo: ZFileAlgo;
  verify: boolean;
}

/** A fresh 512-byte header/trailer with the digest computed (CALC_DIGEST is always set). */
export function buildHeaderTrailer(f: BuildFields): Uint8Array {
  const b = new Uint8Array(HT_SIZE);
  b.set(MAGIC0, 0);
  b.set(MAGIC1, 8);
  const dv = new DataView(b.buffer);
  dv.setUint32(24, HT_STRUCT_SIZE, true);
  dv.setUint32(32, (f.flags | FLAG_CALC_DIGEST) >>> 0, true);
  dv.setBigUint64(40, BigInt(f.indexOffset), true);
  dv.setBigUint64(48, BigInt(f.indexSize), true);
  dv.setBigUint64(56, BigInt(f.originalSize), true);
  dv.setUint32(64, f.indexCrc >>> 0, true);
  dv.setUint32(72, f.blockSize, true);
  b[76] = f.algo === 'lz4' ? ALGO_LZ4 : ALGO_ZSTD;
  b[88] = f.verify ? 1 : 0;
  dv.setUint32(28, headerDigest(b), true);
  return b;
}

export function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}
