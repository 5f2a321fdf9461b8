/**
 * The contract between a stage that checks fetched bytes (chunk verification) and a source that
 * can fetch the same bytes from more than one place (P2P parent, mirrors, the origin registry).
 * A checker that finds a range wrong asks for it again with `refetch`, naming why; a source with
 * several upstreams then reads it from the next upstream instead of the one that served it, and
 * counts the rejection against that upstream. A source with one upstream simply reads again.
 */
import type { ByteSource } from './types.ts';

export interface Refetchable {
  /**
   * Reads [offset, offset+dst.length) again, not from the upstream that served the rejected copy
   * when there is another. Resolves with the count read (short only at the end of the source).
   */
  refetch(dst: Uint8Array, offset: number, reason: string): Promise<number>;
  /** The name of the upstream that served the most recent read of the range at `offset` (for logs). */
  servedBy?(offset: number): string | undefined;
}

export function canRefetch(s: ByteSource): s is ByteSource & Refetchable {
  return typeof (s as Partial<Refetchable>).refetch === 'function';
}
