/**
 * Sequential read-ahead as a filter over a prefetching source (the block cache), kept as a
 * window per stream, as the kernel keeps its read-ahead: each sequential stream has a frontier
 * up to which prefetches were asked for; when the reader comes within half a window of it, the
 * next window is asked for. No range is asked twice while the stream goes on, and a reader that
 * outruns the fetches (reads answered from the page cache in microseconds) still keeps the
 * window ahead of it. Reads are passed down first, so a demand miss claims its pages before the
 * read-ahead of the same stream plans its own.
 */
import { SourceFilter } from '../filter.ts';
import type { ByteSource } from '../types.ts';
import { SequentialDetector } from './sequential.ts';

export class ReadAheadSource extends SourceFilter {
  private readonly sequential = new SequentialDetector();
  /** Per stream slot: the end of what was asked for ahead of it. */
  private readonly frontier = new Float64Array(this.sequential.streams);
  private pauses = 0;

  constructor(next: ByteSource, private readonly bytes: number) {
    super(next);
    if (!next.caps.prefetch) throw new Error(`read-ahead over ${next.name ?? 'a source'} that cannot prefetch`);
  }

  override read(dst: Uint8Array, offset: number): Promise<number> {
    const reading = this.next.read(dst, offset);
    const end = offset + dst.length;
    const k = this.sequential.note(offset, end);
    if (k >= 0) this.ahead(k, end);
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

  private ahead(k: number, end: number): void {
    if (this.pauses > 0 || this.bytes <= 0 || end >= this.size) return;
    // A frontier behind the reader belongs to an earlier stream in this slot: start afresh.
    const frontier = this.frontier[k]! > end ? this.frontier[k]! : end;
    if (frontier - end >= this.bytes / 2) return;
    const to = Math.min(this.size, end + this.bytes);
    this.frontier[k] = to;
    if (to > frontier) void this.next.prefetch!(frontier, to - frontier, 'readahead');
  }
}
