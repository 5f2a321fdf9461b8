/**
 * Checking and decompressing one stored ZFile block (formats.md §3.4-3.5), shared by the reader's
 * inline path and its decode threads so both judge a block the same way.
 */
import { BLOCK_CRC_INIT, crc32c } from '../crc32c.ts';
import type { BlockDecompressor } from './codec.ts';

/**
 * Decodes the block stored at `window[start, end)` into `out` (exactly its uncompressed length).
 * `stored`: the block ends in a 4-byte CRC, checked when `check`. Returns what was wrong, or
 * undefined. For LZ4 the 4 bytes before `start` are overwritten (see BlockDecompressor).
 */
export function decodeInto(dec: BlockDecompressor, stored: boolean, check: boolean,
  window: Uint8Array, start: number, end: number, out: Uint8Array): string | undefined {
  let dataEnd = end;
  if (stored) {
    dataEnd -= 4;
    if (check) {
      const want = (window[dataEnd]! | (window[dataEnd + 1]! << 8) | (window[dataEnd + 2]! << 16) | (window[dataEnd + 3]! << 24)) >>> 0;
      const crc = crc32c(window.subarray(start, dataEnd), BLOCK_CRC_INIT);
      if (crc !== want) return `CRC mismatch (stored 0x${want.toString(16).padStart(8, '0')}, computed 0x${crc.toString(16).padStart(8, '0')})`;
    }
  }
  let n: number;
  try {
    n = dec.decompress(window, start, dataEnd, out);
  } catch (err) {
    return `${dec.algo} decompression failed: ${(err as Error).message}`;
  }
  if (n !== out.length) return `decompressed to ${n} bytes, expected ${out.length}`;
  return undefined;
}
