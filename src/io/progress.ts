/**
 * The contract between a stage that checks bytes (chunk verification) and a source that receives
 * them over time (an HTTP body): the source says, while a read is in flight, how many leading
 * bytes of `dst` have arrived, so the checker hashes each chunk as soon as it is whole, while
 * the rest is still on the wire, instead of all of them after the last byte.
 */
import type { ByteSource } from './types.ts';

export interface ProgressiveRead {
  /**
   * Like `read`, calling `onFilled(n)` whenever the first n bytes of `dst` hold what this attempt
   * received. An attempt starts with `onFilled(0)`: a retry rewrites `dst` from the start, so
   * whatever was checked of an earlier attempt no longer stands.
   */
  readProgressive(dst: Uint8Array, offset: number, onFilled: (n: number) => void): Promise<number>;
}

export function canReadProgressive(s: ByteSource): s is ByteSource & ProgressiveRead {
  return typeof (s as Partial<ProgressiveRead>).readProgressive === 'function';
}
