/**
 * What the registry client fetched: a small per-blob stats object for callers (e.g. "bytes
 * fetched to attach"), and prom-client counters in their own metrics registry for the daemon to
 * expose.
 */
import { Counter, Registry } from 'prom-client';

export const registryMetrics = new Registry();

export const requestsTotal = new Counter({
  name: 'dadi_registry_requests_total',
  help: 'HTTP requests sent to registries, by kind (manifest, blob, upload, tags, token) and status',
  labelNames: ['kind', 'status'] as const,
  registers: [registryMetrics],
});

export const blobBytesTotal = new Counter({
  name: 'dadi_registry_blob_bytes_total',
  help: 'Blob bytes received from registries',
  registers: [registryMetrics],
});

export const retriesTotal = new Counter({
  name: 'dadi_registry_retries_total',
  help: 'Registry requests retried after a transient failure',
  registers: [registryMetrics],
});

export interface BlobCounters { bytes: number; requests: number }

/** Bytes and requests fetched, per blob digest and in total. */
export class FetchStats {
  readonly blobs = new Map<string, BlobCounters>();
  bytes = 0;
  requests = 0;

  record(digest: string, bytes: number): void {
    let c = this.blobs.get(digest);
    if (!c) {
      c = { bytes: 0, requests: 0 };
      this.blobs.set(digest, c);
    }
    c.bytes += bytes;
    c.requests++;
    this.bytes += bytes;
    this.requests++;
    blobBytesTotal.inc(bytes);
  }

  blob(digest: string): BlobCounters {
    return this.blobs.get(digest) ?? { bytes: 0, requests: 0 };
  }

  toJSON(): { bytes: number; requests: number; blobs: Record<string, BlobCounters> } {
    return { bytes: this.bytes, requests: this.requests, blobs: Object.fromEntries(this.blobs) };
  }
}
