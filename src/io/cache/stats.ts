/**
 * Per-blob cache counters. Plain numbers bumped on the read path (no allocation, no label
 * hashing); the Prometheus view in metrics.ts reads them at scrape time.
 */

/** Log-bucketed latency histogram (8 buckets per doubling, ~9% resolution) for p50/p99. */
export class LatencyHistogram {
  private static readonly PER_DOUBLING = 8;
  private static readonly MIN_US = 1;
  private readonly counts = new Float64Array(8 * 40); // 1 µs .. ~12 days
  count = 0;
  sumSeconds = 0;

  observe(seconds: number): void {
    const us = Math.max(LatencyHistogram.MIN_US, seconds * 1e6);
    const idx = Math.min(this.counts.length - 1, Math.floor(Math.log2(us) * LatencyHistogram.PER_DOUBLING));
    this.counts[idx]!++;
    this.count++;
    this.sumSeconds += seconds;
  }

  /** The q-quantile in seconds (upper edge of its bucket), or 0 with no observations. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const target = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return 2 ** ((i + 1) / LatencyHistogram.PER_DOUBLING) / 1e6;
    }
    return 2 ** (this.counts.length / LatencyHistogram.PER_DOUBLING) / 1e6;
  }
}

export class BlobStats {
  /** Reads served entirely from the local file. */
  hits = 0;
  /** Reads that needed at least one unit from upstream. */
  misses = 0;
  bytesFromCache = 0;
  bytesFromUpstream = 0;
  upstreamRequests = 0;
  /** Upstream requests started by sequential read-ahead (also counted in upstreamRequests). */
  readAheadRequests = 0;
  /** Upstream requests made by the background download (also counted in upstreamRequests). */
  backgroundRequests = 0;
  /** Upstream requests made by trace replay (also counted in upstreamRequests). */
  traceRequests = 0;
  upstreamErrors = 0;
  /** The most recent failure (upstream fault, digest mismatch, local I/O), for status pages. */
  lastError: string | undefined;
  readonly missLatency = new LatencyHistogram();

  constructor(readonly digest: string) {}

  /** A plain snapshot for `--json` and tests. */
  snapshot(): BlobStatsSnapshot {
    return {
      digest: this.digest,
      hits: this.hits,
      misses: this.misses,
      bytesFromCache: this.bytesFromCache,
      bytesFromUpstream: this.bytesFromUpstream,
      upstreamRequests: this.upstreamRequests,
      readAheadRequests: this.readAheadRequests,
      backgroundRequests: this.backgroundRequests,
      traceRequests: this.traceRequests,
      upstreamErrors: this.upstreamErrors,
      lastError: this.lastError,
      missLatencyP50: this.missLatency.quantile(0.5),
      missLatencyP99: this.missLatency.quantile(0.99),
    };
  }
}

export interface BlobStatsSnapshot {
  digest: string;
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
  upstreamRequests: number;
  readAheadRequests: number;
  traceRequests: number;
  backgroundRequests: number;
  upstreamErrors: number;
  lastError: string | undefined;
  /** Seconds. */
  missLatencyP50: number;
  missLatencyP99: number;
}
