import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { BlobCache, type BlobCacheOptions } from '../../src/io/cache.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { CountingSource, HttpTestSource } from './cache/http-source.ts';
import { KiB, makeBlob, MiB } from './cache/fixture.ts';
import { RangeServer } from './cache/range-server.ts';

interface Blob { body: Buffer; digest: string; server: RangeServer }

async function blobs(t: TestContext, n: number, size: number): Promise<Blob[]> {
  const out: Blob[] = [];
  for (let i = 0; i < n; i++) {
    const b = makeBlob(size);
    const server = await RangeServer.start(b.body);
    t.after(() => server.stop());
    out.push({ ...b, server });
  }
  return out;
}

async function cacheIn(t: TestContext, opts: Partial<BlobCacheOptions> & { capacityBytes: number }): Promise<{ dir: string; reopen(): Promise<BlobCache>; cache: () => BlobCache }> {
  const dir = await tempDir(t, 'dadi-cache-cap-');
  const full: BlobCacheOptions = { dir, refillUnit: 256 * KiB, metricsRegistry: new Registry(), ...opts };
  let cache = await BlobCache.open(full);
  t.after(() => cache.close());
  return {
    dir,
    cache: () => cache,
    async reopen() {
      await cache.close();
      cache = await BlobCache.open(full);
      return cache;
    },
  };
}

function openBlob(cache: BlobCache, b: Blob) {
  const up = new CountingSource(new HttpTestSource(b.server.url, b.body.length));
  return cache.open(b.digest, b.body.length, up).then((src) => ({ src, up }));
}

async function readAll(cache: BlobCache, b: Blob, keepOpen = false) {
  const h = await openBlob(cache, b);
  const dst = new Uint8Array(b.body.length);
  assert.equal(await h.src.read(dst, 0), dst.length);
  assert.deepEqual(Buffer.from(dst), b.body);
  if (!keepOpen) await h.src.close();
  return h;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

const tick = () => new Promise((r) => setTimeout(r, 20));

test('over capacity, the least recently used closed blob is evicted whole, and LRU order survives a restart', async (t) => {
  const [a, b, c, d] = await blobs(t, 4, 1 * MiB);
  const env = await cacheIn(t, { capacityBytes: 2.5 * MiB });
  let cache = env.cache();
  await readAll(cache, a!); await tick();
  await readAll(cache, b!); await tick();
  const again = await openBlob(cache, a!); // touching A makes B the oldest
  await again.src.read(new Uint8Array(10), 0);
  assert.equal(again.up.requests, 0);
  await again.src.close(); await tick();
  await readAll(cache, c!); await tick();
  await cache.settle();
  assert.deepEqual(cache.list().map((e) => e.digest).sort(), [a!.digest, c!.digest].sort());
  assert.equal(cache.usedBytes, 2 * MiB);
  assert.equal(cache.evictions, 1);
  const bFiles = join(env.dir, 'blobs', 'sha256', b!.digest.slice(7));
  assert.equal(await exists(`${bFiles}.data`), false);
  assert.equal(await exists(`${bFiles}.map`), false);

  cache = await env.reopen();
  assert.equal(cache.usedBytes, 2 * MiB);
  await readAll(cache, d!);
  await cache.settle();
  assert.deepEqual(cache.list().map((e) => e.digest).sort(), [c!.digest, d!.digest].sort(), 'A was older than C');

  // An evicted blob reads correctly again, from upstream.
  const requestsBefore = b!.server.requests.length;
  await readAll(cache, b!);
  assert.ok(b!.server.requests.length > requestsBefore);
});

test('an open blob with reads in flight is never evicted; it becomes evictable once closed', async (t) => {
  const [a, b] = await blobs(t, 2, 1 * MiB);
  const env = await cacheIn(t, { capacityBytes: 1 * MiB });
  const cache = env.cache();
  const ha = await openBlob(cache, a!);
  const first = new Uint8Array(512 * KiB);
  await ha.src.read(first, 0);
  let release!: () => void;
  ha.up.gate = new Promise((r) => { release = r; });
  const inFlight = new Uint8Array(4 * KiB);
  const pending = ha.src.read(inFlight, 3 * 256 * KiB);
  await readAll(cache, b!, true); // B stays open too: nothing may be evicted
  await cache.settle();
  assert.equal(cache.usedBytes, 1.5 * MiB);
  assert.equal(cache.evictions, 0);
  release();
  await pending;
  assert.deepEqual(Buffer.from(inFlight), a!.body.subarray(768 * KiB, 772 * KiB));
  await ha.src.read(first, 0);
  assert.deepEqual(Buffer.from(first), a!.body.subarray(0, 512 * KiB));
  await ha.src.close();
  await cache.settle();
  assert.deepEqual(cache.list().map((e) => e.digest), [b!.digest]);
  assert.equal(cache.evictions, 1);
});

test('low free disk space evicts closed blobs even under capacity', async (t) => {
  const [a] = await blobs(t, 1, 512 * KiB);
  const env = await cacheIn(t, { capacityBytes: 1 << 30, minFreeBytes: Number.MAX_SAFE_INTEGER });
  const cache = env.cache();
  const h = await readAll(cache, a!, true);
  await cache.settle();
  assert.equal(cache.list().length, 1, 'open blobs stay');
  await h.src.close();
  await cache.settle();
  assert.equal(cache.list().length, 0);
});

test('a full cache file system (ENOSPC) still serves correct bytes from upstream and marks nothing present', async (t) => {
  if (!requireSystem(t, { root: true, commands: ['mount', 'umount'] })) return;
  const [a] = await blobs(t, 1, 3 * MiB);
  const dir = await mkdtemp(join(tmpdir(), 'dadi-cache-enospc-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  assert.equal(mounted.status, 0, mounted.stderr?.toString());
  const cache = await BlobCache.open({ dir, capacityBytes: 1 << 30, refillUnit: 256 * KiB, metricsRegistry: null });
  try {
    const { src } = await openBlob(cache, a!);
    const dst = new Uint8Array(3 * MiB);
    assert.equal(await src.read(dst, 0), dst.length);
    assert.deepEqual(Buffer.from(dst), a!.body);
    assert.ok(src.map.presentBytes < 3 * MiB, 'units whose write failed are not present');
    assert.match(src.stats.lastError ?? '', /ENOSPC/);
    // Present units read back correctly; the rest is fetched again, correctly.
    dst.fill(0);
    assert.equal(await src.read(dst, 0), dst.length);
    assert.deepEqual(Buffer.from(dst), a!.body);
  } finally {
    await cache.close();
    spawnSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  }
});
