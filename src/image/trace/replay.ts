/**
 * Replaying a trace into the block cache: the traced ranges are merged into large requests
 * (records of one layer that overlap or lie within `gap` bytes of a request issued shortly
 * before, up to `maxRequest` bytes) kept in the order their first record was touched, and
 * prefetched through each layer's source (ZFile → tar slice → cache, which maps them to blob
 * ranges, skips what is present and joins fetches in flight, so no byte is fetched twice) by
 * `concurrency` workers. Demand reads come first: a worker waits while any demand miss of the
 * layer is waiting on upstream before it issues its next request, and the workers together use
 * fewer connections than the registry client has, so a demand request never queues behind them.
 * stop() (the image is closed) lets requests in flight finish and issues no more.
 */
import type { ByteSource } from '../../io/types.ts';
import { log } from '../../util/log.ts';
import type { TraceRecord } from './format.ts';
import type { TraceTap } from './tap.ts';

export interface ReplayRequest { layer: number; offset: number; length: number }

export interface PlanOptions {
  /** Largest merged request (default 4 MiB, the cache's largest single upstream fetch). */
  maxRequest?: number;
  /** Records this close to a request are merged into it, the hole fetched too (default 64 KiB). */
  gap?: number;
  /** How many recent requests a record may join (default 64): further back, first-touch order wins. */
  window?: number;
}

/** The merged requests of a trace in first-touch order (write records are not replayed). */
export function planReplay(records: readonly TraceRecord[], o: PlanOptions = {}): ReplayRequest[] {
  const maxRequest = o.maxRequest ?? 4 << 20;
  const gap = o.gap ?? 64 << 10;
  const window = o.window ?? 64;
  const out: ReplayRequest[] = [];
  for (const r of records) {
    if (r.op !== 'R' || r.length <= 0) continue;
    const end = r.offset + r.length;
    let merged = false;
    for (let k = out.length - 1; k >= Math.max(0, out.length - window); k--) {
      const q = out[k]!;
      if (q.layer !== r.layer) continue;
      const qEnd = q.offset + q.length;
      if (r.offset > qEnd + gap || end < q.offset - gap) continue;
      const start = Math.min(q.offset, r.offset);
      const stop = Math.max(qEnd, end);
      if (stop - start > maxRequest) continue;
      q.offset = start;
      q.length = stop - start;
      merged = true;
      break;
    }
    if (!merged) out.push({ layer: r.layer, offset: r.offset, length: r.length });
  }
  return out;
}

/** What a replay did, for the log, `dadi image info` and metrics. */
export interface ReplayStats {
  requests: number;
  issued: number;
  /** Traced bytes of the plan (merged requests, holes included). */
  prefetchBytes: number;
  /** Of those, the bytes of the requests issued (all of them unless stopped early). */
  issuedBytes: number;
  /** Demand reads of a layer after the replay started, and those whose bytes a finished prefetch had brought. */
  demandReads: number;
  demandHitsPrefetched: number;
  running: boolean;
  /** Wall time from start to the last request done (or to now while running), ms. */
  wallMs: number;
}

export interface ReplayLayer {
  /** The layer's tapped source (prefetch goes through it). */
  source: ByteSource;
  /** Resolves when no demand read of this layer waits on upstream. */
  demandIdle(): Promise<void>;
}

/** Sorted, merged [start, end) intervals of one layer's prefetched bytes. */
class Covered {
  private starts: number[] = [];
  private ends: number[] = [];

  add(start: number, end: number): void {
    const s: number[] = [];
    const e: number[] = [];
    let placed = false;
    for (let i = 0; i < this.starts.length; i++) {
      const a = this.starts[i]!;
      const b = this.ends[i]!;
      if (b < start) { s.push(a); e.push(b); continue; }
      if (a > end) {
        if (!placed) { s.push(start); e.push(end); placed = true; }
        s.push(a); e.push(b);
        continue;
      }
      start = Math.min(start, a);
      end = Math.max(end, b);
    }
    if (!placed) { s.push(start); e.push(end); }
    this.starts = s;
    this.ends = e;
  }

  covers(start: number, end: number): boolean {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= start) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi >= 0 && this.ends[hi]! >= end;
  }
}

export class TraceReplay {
  private next = 0;
  private stopped = false;
  private issued = 0;
  private issuedBytes = 0;
  private readonly started = performance.now();
  private finishedAt: number | undefined;
  private readonly covered = new Map<number, Covered>();
  private demandReads = 0;
  private demandHits = 0;
  private readonly unlisten: () => void;
  readonly done: Promise<void>;

  constructor(private readonly name: string, private readonly requests: readonly ReplayRequest[],
    private readonly layers: ReadonlyArray<ReplayLayer | undefined>, tap: TraceTap | undefined, concurrency = 4) {
    this.unlisten = tap?.listen((layer, offset, length) => {
      this.demandReads++;
      if (this.covered.get(layer)?.covers(offset, offset + length)) this.demandHits++;
    }) ?? (() => {});
    const workers = Array.from({ length: Math.max(1, Math.min(concurrency, requests.length)) }, () => this.worker());
    this.done = Promise.all(workers).then(() => {
      this.finishedAt = performance.now();
      log.info({ image: name, ...this.stats() }, this.stopped ? 'trace replay stopped' : 'trace replay done');
    });
  }

  private async worker(): Promise<void> {
    while (!this.stopped && this.next < this.requests.length) {
      const req = this.requests[this.next++]!;
      const layer = this.layers[req.layer];
      if (!layer?.source.prefetch) continue;
      await layer.demandIdle();
      if (this.stopped) break;
      this.issued++;
      this.issuedBytes += req.length;
      try {
        await layer.source.prefetch(req.offset, req.length, 'trace');
        let c = this.covered.get(req.layer);
        if (!c) this.covered.set(req.layer, c = new Covered());
        c.add(req.offset, req.offset + req.length);
      } catch (err) {
        log.debug({ image: this.name, err: (err as Error).message }, 'trace prefetch failed');
      }
    }
  }

  stats(): ReplayStats {
    return {
      requests: this.requests.length, issued: this.issued,
      prefetchBytes: this.requests.reduce((n, r) => n + r.length, 0), issuedBytes: this.issuedBytes,
      demandReads: this.demandReads, demandHitsPrefetched: this.demandHits,
      running: this.finishedAt === undefined,
      wallMs: Math.round((this.finishedAt ?? performance.now()) - this.started),
    };
  }

  /** Issues no more requests; resolves when those in flight are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.unlisten();
  }
}
