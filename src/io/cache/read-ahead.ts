/**
 * Sequential read-ahead as a filter over a prefetching source (the block cache): a read that
 * continues a sequential stream asks the source below to prefetch the next `bytes`, at most two
 * such prefetches in flight. Reads are passed down first, so a demand miss claims its pages
 * before the read-ahead of the same stream plans its own.
 */
import { SourceFilter } from '../filter.ts';
import type { ByteSource } from '../types.ts';
import { SequentialDetector } from './sequential.ts';

const MAX_IN_FLIGHT = 2;

export class ReadAheadSource extends SourceFilter {
  private readonly sequential = new SequentialDetector();
  private inFlight = 0;
  private pauses = 0;

  constructor(next: ByteSource, private readonly bytes: number) {
    super(next);
    if (!next.caps.prefetch) throw new Error(`read-ahead over ${next.name ?? 'a source'} that cannot prefetch`);
  }

  override read(dst: Uint8Array, offset: number): Promise<number> {
    const reading = this.next.read(dst, offset);
    const end = offset + dst.length;
    if (this.sequential.note(offset, end)) this.ahead(end);
    return reading;
  }

  /**
   * Suspends read-ahead until the returned function is called: attaching reads headers and
   * indexes whose adjacency looks sequential but predicts nothing about later reads.
   */
  pause(): () => void {
    this.pauses++;
    let resumed = false;
    return () => {
      if (!resumed) this.pauses--;
      resumed = true;
    };
  }

  private ahead(from: number): void {
    if (this.pauses > 0 || this.bytes <= 0 || from >= this.size || this.inFlight >= MAX_IN_FLIGHT) return;
    this.inFlight++;
    void this.next.prefetch!(from, this.bytes, 'readahead').finally(() => this.inFlight--);
  }
}
