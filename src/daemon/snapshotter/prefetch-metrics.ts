/**
 * Prometheus view of the snapshotter's prefetches (trace replay, file list, whole layers), per
 * image and kind. Like the cache metrics, the values are read at scrape time from each replay's
 * own counters (the read path bumps plain numbers only): replays still running count what they
 * did so far, detached ones what they did in all. Registered in prom-client's default registry,
 * which the daemon's /metrics serves.
 */
import { Counter, Gauge, Histogram, register } from 'prom-client';
import type { ReplayStats } from '../../image/trace/replay.ts';

export type PrefetchKind = 'trace' | 'file-list' | 'layers';

/** One prefetch as the metrics see it. */
export interface PrefetchRun {
  readonly image: string;
  readonly kind: PrefetchKind;
  stats(): ReplayStats & { cacheMisses: number };
}

type Totals = { issuedBytes: number; demandReads: number; demandHits: number; cacheMisses: number };
const FIELDS: ReadonlyArray<[keyof Totals, (s: ReplayStats & { cacheMisses: number }) => number]> = [
  ['issuedBytes', (s) => s.issuedBytes], ['demandReads', (s) => s.demandReads],
  ['demandHits', (s) => s.demandHitsPrefetched], ['cacheMisses', (s) => s.cacheMisses],
];

class PrefetchMetrics {
  private readonly live = new Set<PrefetchRun>();
  /** Totals of finished (detached) prefetches, by `kind image`. */
  private readonly finished = new Map<string, { image: string; kind: PrefetchKind; t: Totals }>();
  private readonly seconds: Histogram<'image' | 'kind'>;

  constructor() {
    const counter = (name: string, help: string, field: keyof Totals): void => {
      const self = this;
      new Counter({
        name, help, labelNames: ['image', 'kind'], registers: [register],
        collect(this: Counter<'image' | 'kind'>) {
          this.reset();
          for (const f of self.finished.values()) this.inc({ image: f.image, kind: f.kind }, f.t[field]);
          for (const r of self.live) {
            const s = r.stats();
            this.inc({ image: r.image, kind: r.kind }, FIELDS.find(([k]) => k === field)![1](s));
          }
        },
      });
    };
    counter('dadi_trace_prefetch_bytes_total', 'Bytes requested by prefetch (trace replay, file list, whole layers), holes included', 'issuedBytes');
    counter('dadi_trace_demand_reads_total', 'Demand reads of an image\'s layers while a prefetch of it ran', 'demandReads');
    counter('dadi_trace_demand_hits_total', 'Demand reads served by bytes a prefetch had brought', 'demandHits');
    counter('dadi_trace_demand_misses_total', 'Demand reads that waited on the registry after a prefetch started', 'cacheMisses');
    const live = this.live;
    new Gauge({
      name: 'dadi_trace_replays_running', help: 'Prefetches still issuing requests', registers: [register],
      collect(this: Gauge) {
        let n = 0;
        for (const r of live) if (r.stats().running) n++;
        this.set(n);
      },
    });
    this.seconds = new Histogram({
      name: 'dadi_trace_replay_seconds', help: 'Wall time of a prefetch, from its start to its last request done',
      labelNames: ['image', 'kind'], registers: [register], buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    });
  }

  started(r: PrefetchRun): void {
    this.live.add(r);
  }

  /** The prefetch issued its last request: its wall time is known. */
  done(r: PrefetchRun): void {
    this.seconds.observe({ image: r.image, kind: r.kind }, r.stats().wallMs / 1000);
  }

  /** The image detached: the prefetch's final counts move to the totals. */
  ended(r: PrefetchRun): void {
    if (!this.live.delete(r)) return;
    const key = `${r.kind} ${r.image}`;
    let f = this.finished.get(key);
    if (!f) this.finished.set(key, f = { image: r.image, kind: r.kind, t: { issuedBytes: 0, demandReads: 0, demandHits: 0, cacheMisses: 0 } });
    const s = r.stats();
    for (const [k, pick] of FIELDS) f.t[k] += pick(s);
  }
}

export const prefetchMetrics = new PrefetchMetrics();
