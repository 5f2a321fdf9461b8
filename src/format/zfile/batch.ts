/**
 * Compressing a batch of consecutive blocks into their stored form (compressed bytes, then the
 * CRC when checksums are on), shared by the in-thread path and the worker threads.
 */
import { BLOCK_CRC_INIT, crc32c } from '../crc32c.ts';
import { BlockCompressor, maxStoredBlock } from './codec.ts';
import type { ZFileAlgo } from './header.ts';

export interface BatchSpec {
  algo: ZFileAlgo;
  blockSize: number;
  checksum: boolean;
}

export interface BatchResult {
  /** Stored blocks back to back; only the first `outLength` bytes are meaningful. */
  output: Uint8Array;
  outLength: number;
  /** Stored length of each block (CRC included), the jump-table entries. */
  lengths: Uint32Array;
}

const compressors = new Map<string, BlockCompressor>();

function compressorFor(algo: ZFileAlgo, blockSize: number): BlockCompressor {
  const key = `${algo}/${blockSize}`;
  let c = compressors.get(key);
  if (!c) {
    c = new BlockCompressor(algo, blockSize);
    compressors.set(key, c);
  }
  return c;
}

export function outputBound(spec: BatchSpec, inputLength: number): number {
  return Math.ceil(inputLength / spec.blockSize) * maxStoredBlock(spec.blockSize);
}

/** Compresses `input` block by block into `output` (grown when too small, which a bound prevents). */
export function compressBatch(spec: BatchSpec, input: Uint8Array, output: Uint8Array): BatchResult {
  const bs = spec.blockSize;
  const count = Math.ceil(input.length / bs);
  const need = outputBound(spec, input.length);
  const out = output.length >= need ? output : new Uint8Array(need);
  const lengths = new Uint32Array(count);
  const compressor = compressorFor(spec.algo, bs);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const block = input.subarray(i * bs, Math.min(input.length, (i + 1) * bs));
    let len = compressor.compressInto(block, out, pos);
    if (spec.checksum) {
      const crc = crc32c(out.subarray(pos, pos + len), BLOCK_CRC_INIT);
      out[pos + len] = crc & 0xff;
      out[pos + len + 1] = (crc >>> 8) & 0xff;
      out[pos + len + 2] = (crc >>> 16) & 0xff;
      out[pos + len + 3] = (crc >>> 24) & 0xff;
      len += 4;
    }
    lengths[i] = len;
    pos += len;
  }
  return { output: out, outLength: pos, lengths };
}
