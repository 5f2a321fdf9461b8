/**
 * Recording a trace: every read a tap reports, deduplicated by 4 KiB block of its layer and kept
 * in first-touch order with the time it was first read (ms since the recording started). A read
 * of blocks already traced adds nothing; a read touching new blocks adds one record per run of
 * new blocks, and a record continuing the previous one (a sequential reader) extends it.
 * overlaybd logs every pread raw; deduplicated records replay the same bytes with fewer entries.
 */
import { encodeTrace, type TraceRecord } from './format.ts';
import type { TraceTap } from './tap.ts';

export const TRACE_BLOCK = 4096;

export interface TracedRead extends TraceRecord {
  /** When the first byte of the record was first read, ms after the recording started. */
  atMs: number;
}

export class TraceRecorder {
  readonly records: TracedRead[] = [];
  private readonly seen = new Map<number, Set<number>>();
  private readonly started = performance.now();
  private stopListening: (() => void) | undefined;

  /** Starts recording the reads `tap` reports; `sizes` bounds each layer's records. */
  constructor(tap: TraceTap, private readonly sizeOf: (layer: number) => number) {
    this.stopListening = tap.listen((layer, offset, length) => this.add(layer, offset, length));
  }

  get recording(): boolean { return this.stopListening !== undefined; }

  add(layer: number, offset: number, length: number): void {
    let seen = this.seen.get(layer);
    if (!seen) this.seen.set(layer, seen = new Set());
    const first = Math.floor(offset / TRACE_BLOCK);
    const last = Math.floor((offset + length - 1) / TRACE_BLOCK);
    const size = this.sizeOf(layer);
    const atMs = Math.round(performance.now() - this.started);
    let b = first;
    while (b <= last) {
      if (seen.has(b)) { b++; continue; }
      let e = b;
      while (e + 1 <= last && !seen.has(e + 1)) e++;
      for (let k = b; k <= e; k++) seen.add(k);
      const start = b * TRACE_BLOCK;
      const end = Math.min(size, (e + 1) * TRACE_BLOCK);
      const prev = this.records[this.records.length - 1];
      if (prev && prev.layer === layer && prev.offset + prev.length === start) prev.length = end - prev.offset;
      else this.records.push({ op: 'R', layer, offset: start, length: end - start, atMs });
      b = e + 1;
    }
  }

  /** Stops recording (idempotent) and returns the trace file's bytes. */
  stop(): Uint8Array {
    this.stopListening?.();
    this.stopListening = undefined;
    return encodeTrace(this.records);
  }

  get bytes(): number {
    return this.records.reduce((n, r) => n + r.length, 0);
  }
}
