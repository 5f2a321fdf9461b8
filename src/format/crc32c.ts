/**
 * The CRC the overlaybd formats use: CRC-32C (Castagnoli) with no initial and no final inversion,
 * the caller supplying the start register (formats.md §3.5). @node-rs/crc32 computes the standard
 * variant in hardware, which inverts on entry and exit, so the raw register is recovered by
 * inverting around it: raw(init, d) = ~std(d, ~init).
 */
import { crc32c as standardCrc32c } from '@node-rs/crc32';

/** Start register for per-block CRCs. */
export const BLOCK_CRC_INIT = 100007;

export function crc32c(data: Uint8Array, init: number): number {
  return ~standardCrc32c(data, ~init >>> 0) >>> 0;
}
