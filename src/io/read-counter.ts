/**
 * A filter that only counts: reads and bytes that pass through it, wherever it is inserted in a
 * chain (below the cache it counts what is fetched, above the decoders what the disk reads).
 */
import { SourceFilter } from './filter.ts';
import type { ByteSource } from './types.ts';

export interface ReadCounts { reads: number; bytes: number }

export class ReadCounter extends SourceFilter {
  constructor(next: ByteSource, readonly counts: ReadCounts = { reads: 0, bytes: 0 }) {
    super(next);
  }

  override async read(dst: Uint8Array, offset: number): Promise<number> {
    const n = await this.next.read(dst, offset);
    this.counts.reads++;
    this.counts.bytes += n;
    return n;
  }

  override readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    const n = super.readSync(dst, dstOffset, length, position);
    this.counts.reads++;
    this.counts.bytes += n;
    return n;
  }
}
