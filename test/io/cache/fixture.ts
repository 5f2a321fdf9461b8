/** Shared set-up for cache tests: a deterministic blob, its digest, a real HTTP upstream, a cache dir. */
import { createHash, randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { BlobCache, ReadAheadSource, type BlobCacheOptions, type CacheHandle, type CachedSourceOptions } from '../../../src/io/cache.ts';
import type { ByteSource } from '../../../src/io/types.ts';
import { tempDir } from '../../helpers/env.ts';
import { CountingSource, HttpTestSource } from './http-source.ts';
import { RangeServer, type RangeServerOptions } from './range-server.ts';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** The hex part of a sha256 digest: the name of the blob's files in the cache directory. */
export function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

export function makeBlob(size: number): { body: Buffer; digest: string } {
  const body = randomBytes(size);
  return { body, digest: `sha256:${createHash('sha256').update(body).digest('hex')}` };
}

export interface Fixture {
  dir: string;
  body: Buffer;
  digest: string;
  server: RangeServer;
  cache: BlobCache;
  registry: Registry;
  /**
   * Opens the blob through the cache over a fresh counting HTTP upstream. `reader` is the handle
   * under a read-ahead filter when `readAheadBytes` is given (the chain's arrangement), else the handle.
   */
  open(opts?: CachedSourceOptions & { readAheadBytes?: number }): Promise<{ src: CacheHandle; up: CountingSource; reader: ByteSource }>;
  /** Closes the cache and opens the same directory again (a restart). */
  reopen(): Promise<void>;
}

export async function fixture(t: TestContext, o: {
  size: number;
  cache?: Partial<BlobCacheOptions>;
  server?: RangeServerOptions;
  body?: Buffer;
  digest?: string;
}): Promise<Fixture> {
  const dir = await tempDir(t, 'dadi-cache-');
  const blob = o.body ? { body: o.body, digest: o.digest ?? makeBlob(0).digest } : makeBlob(o.size);
  const server = await RangeServer.start(blob.body, o.server);
  t.after(() => server.stop());
  const registry = new Registry();
  const cacheOpts: BlobCacheOptions = { dir, capacityBytes: 1 << 30, refillUnit: 256 * KiB, metricsRegistry: registry, ...o.cache };
  const f: Fixture = {
    dir, body: blob.body, digest: o.digest ?? blob.digest, server, registry,
    cache: await BlobCache.open(cacheOpts),
    async open(opts) {
      const up = new CountingSource(new HttpTestSource(server.url, blob.body.length));
      const src = await f.cache.open(f.digest, blob.body.length, up, opts);
      const ahead = opts?.readAheadBytes ?? 0;
      return { src, up, reader: ahead > 0 ? new ReadAheadSource(src, ahead) : src };
    },
    async reopen() {
      await f.cache.close();
      f.cache = await BlobCache.open(cacheOpts);
    },
  };
  t.after(() => f.cache.close());
  return f;
}

/** Polls until `cond` holds (for effects that happen asynchronously), failing after `ms`. */
export async function eventually(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
