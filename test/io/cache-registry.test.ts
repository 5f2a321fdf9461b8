/**
 * The cache over the real registry path: docker-registry (distribution) as the peer, the
 * project's RegistryClient + HttpRangeSource as the upstream. Upstream traffic is read from the
 * client's own per-blob fetch counters.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { BlobCache } from '../../src/io/cache.ts';
import { HttpRangeSource } from '../../src/registry/blob-source.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { startDockerRegistry } from '../helpers/registry.ts';

const U = 256 * 1024;

test('docker-registry upstream: refill-unit fetches, shared misses, verified background download, served after the registry is gone', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const reg = await startDockerRegistry(t);
  const client = new RegistryClient({ retries: 0, timeoutMs: 5000 });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'cache/blob' };
  const blob = randomBytes(2 * 1024 * 1024 + 777);
  const other = randomBytes(100_000);
  const { digest } = await client.blobs.upload(repo, blob);
  const { digest: otherDigest } = await client.blobs.upload(repo, other);
  const dir = await tempDir(t, 'dadi-cache-reg-');
  const opts = { dir, capacityBytes: 1 << 30, metricsRegistry: new Registry() };
  let cache = await BlobCache.open(opts);
  t.after(() => cache.close());
  const src = await cache.open(digest, blob.length, new HttpRangeSource(client, repo, digest, blob.length));

  const dst = new Uint8Array(4096);
  await src.read(dst, 300_000);
  assert.deepEqual(Buffer.from(dst), blob.subarray(300_000, 304_096));
  assert.deepEqual(client.stats.blob(digest), { requests: 1, bytes: U });
  await src.read(dst, 300_000);
  assert.equal(client.stats.blob(digest).requests, 1);

  const bufs = Array.from({ length: 8 }, () => new Uint8Array(4096));
  await Promise.all(bufs.map((b, i) => src.read(b, 5 * U + i * 20_000)));
  bufs.forEach((b, i) => assert.deepEqual(Buffer.from(b), blob.subarray(5 * U + i * 20_000, 5 * U + i * 20_000 + 4096)));
  assert.equal(client.stats.blob(digest).requests, 2);

  const result = await src.startBackgroundDownload({ maxBytesPerSec: 64 * 1024 * 1024 }).done;
  assert.equal(result.ok, true, result.error?.message);
  assert.equal(client.stats.blob(digest).bytes, blob.length, 'every byte fetched exactly once');

  await reg.stop();
  const all = new Uint8Array(blob.length);
  assert.equal(await src.read(all, 0), blob.length);
  assert.deepEqual(Buffer.from(all), blob);
  await cache.close();
  cache = await BlobCache.open(opts);
  const again = await cache.open(digest, blob.length, new HttpRangeSource(client, repo, digest, blob.length));
  assert.ok(again.complete);
  all.fill(0);
  await again.read(all, 0);
  assert.deepEqual(Buffer.from(all), blob);
  assert.equal(client.stats.blob(digest).bytes, blob.length);

  // A blob that was never cached fails cleanly, naming itself, while the registry is down.
  const missing = await cache.open(otherDigest, other.length, new HttpRangeSource(client, repo, otherDigest, other.length));
  await assert.rejects(missing.read(new Uint8Array(10), 0), (err: Error) =>
    err.message.startsWith(`EIO: blob ${otherDigest}: upstream read of bytes 0-99999 failed:`));
  assert.equal(missing.map.presentBytes, 0);
});
