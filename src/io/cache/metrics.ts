/**
 * Prometheus view of the blob caches. Counters are filled at scrape time from each cache's
 * BlobStats (so the read path only bumps plain numbers); miss latency is observed directly,
 * since a miss already costs a network round trip. One set of metrics per registry, shared by
 * every BlobCache that reports into it.
 */
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import type { BlobStats } from './stats.ts';

export interface CacheMetricsSource {
  /** Stats of every blob this cache has served since it was opened. */
  allStats(): Iterable<BlobStats>;
  readonly usedBytes: number;
  readonly capacityBytes: number;
  readonly evictions: number;
}

export class CacheMetrics {
  readonly sources = new Set<CacheMetricsSource>();
  readonly missLatency: Histogram<'blob'>;

  constructor(registry: Registry) {
    const sources = this.sources;
    const perBlob = (name: string, help: string, pick: (s: BlobStats) => number): void => {
      new Counter({
        name, help, labelNames: ['blob'], registers: [registry],
        collect(this: Counter<'blob'>) {
          this.reset();
          for (const src of sources) for (const s of src.allStats()) this.inc({ blob: s.digest }, pick(s));
        },
      });
    };
    perBlob('dadi_cache_hits_total', 'Reads served entirely from the local cache', (s) => s.hits);
    perBlob('dadi_cache_misses_total', 'Reads that fetched at least one refill unit from upstream', (s) => s.misses);
    perBlob('dadi_cache_read_bytes_total', 'Bytes returned from the local cache file', (s) => s.bytesFromCache);
    perBlob('dadi_cache_upstream_bytes_total', 'Bytes fetched from upstream', (s) => s.bytesFromUpstream);
    perBlob('dadi_cache_upstream_requests_total', 'Upstream read requests', (s) => s.upstreamRequests);
    perBlob('dadi_cache_upstream_errors_total', 'Failed upstream read requests', (s) => s.upstreamErrors);
    new Gauge({
      name: 'dadi_cache_used_bytes', help: 'Bytes of blob data held by the caches', registers: [registry],
      collect(this: Gauge) {
        let n = 0;
        for (const src of sources) n += src.usedBytes;
        this.set(n);
      },
    });
    new Gauge({
      name: 'dadi_cache_capacity_bytes', help: 'Configured cache capacity', registers: [registry],
      collect(this: Gauge) {
        let n = 0;
        for (const src of sources) n += src.capacityBytes;
        this.set(n);
      },
    });
    new Counter({
      name: 'dadi_cache_evictions_total', help: 'Blobs evicted from the caches', registers: [registry],
      collect(this: Counter) {
        this.reset();
        let n = 0;
        for (const src of sources) n += src.evictions;
        this.inc(n);
      },
    });
    this.missLatency = new Histogram({
      name: 'dadi_cache_miss_latency_seconds', help: 'Latency of reads that went to upstream',
      labelNames: ['blob'], registers: [registry],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
    });
  }
}

const byRegistry = new WeakMap<Registry, CacheMetrics>();

/** The cache metrics registered in `registry` (the prom-client default unless given). */
export function cacheMetrics(registry: Registry = defaultRegistry): CacheMetrics {
  let m = byRegistry.get(registry);
  if (!m) {
    m = new CacheMetrics(registry);
    byRegistry.set(registry, m);
  }
  return m;
}
