/**
 * HttpRangeSource against the embedded registry, compared with a flat buffer (the reference
 * model): random and concurrent reads, the end of the blob, size from HEAD, and faults that must
 * surface as errors rather than wrong bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HttpRangeSource } from '../../src/registry/blob-source.ts';
import { readFully } from '../../src/io/types.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { sha256Digest } from '../../src/registry/digest.ts';
import { registryMetrics } from '../../src/registry/metrics.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { pseudoRandom } from './image-fixture.ts';

const blob = pseudoRandom(200_001, 5);

test('random reads equal the reference buffer, concurrently, and stop at the end', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const client = new RegistryClient();
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'io/range' };
  const { digest } = await client.blobs.upload(repo, blob, { chunkSize: 64 * 1024 });
  const src = await HttpRangeSource.open(client, repo, digest);
  assert.equal(src.size, blob.length);
  assert.equal(src.name, `${reg.url}/v2/io/range/blobs/${digest}`);

  await fc.assert(fc.asyncProperty(
    fc.array(fc.tuple(fc.nat(blob.length + 100), fc.integer({ min: 0, max: 70_000 })), { minLength: 1, maxLength: 8 }),
    async (reads) => {
      const results = await Promise.all(reads.map(async ([offset, len]) => {
        const dst = new Uint8Array(len);
        const n = await src.read(dst, offset);
        return { offset, len, n, dst };
      }));
      for (const { offset, len, n, dst } of results) {
        const want = blob.subarray(Math.min(offset, blob.length), Math.min(offset + len, blob.length));
        assert.equal(n, want.length);
        assert.deepEqual(Buffer.from(dst.subarray(0, n)), want);
      }
    }), { numRuns: 40 });

  const whole = new Uint8Array(blob.length);
  await readFully(src, whole, 0);
  assert.equal(sha256Digest(whole), digest);
  await assert.rejects(readFully(src, new Uint8Array(10), blob.length - 5), /truncated: wanted 10 bytes, the source ends after 5/);
  await assert.rejects(src.read(new Uint8Array(1), -1), /invalid offset -1/);
  const before = client.stats.blob(digest).requests;
  assert.equal(await src.read(new Uint8Array(0), 10), 0);
  assert.equal(await src.read(new Uint8Array(5), blob.length), 0);
  assert.equal(client.stats.blob(digest).requests, before, 'empty and past-the-end reads need no request');
  await src.close();
});

test('counts bytes and requests per blob', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const client = new RegistryClient();
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'io/stats' };
  const { digest } = await client.blobs.upload(repo, blob);
  const src = new HttpRangeSource(client, repo, digest, blob.length);
  await src.read(new Uint8Array(4096), 0);
  await src.read(new Uint8Array(4096), blob.length - 100);
  assert.deepEqual(client.stats.blob(digest), { bytes: 4096 + 100, requests: 2 });
  const metrics = await registryMetrics.getMetricsAsJSON();
  const bytes = metrics.find((m) => m.name === 'dadi_registry_blob_bytes_total');
  assert.ok(bytes && bytes.values[0]!.value >= 4196, 'prom-client counter follows the fetched bytes');
  const monolithic = await client.blobs.upload(repo, Buffer.from('one request'), { monolithicPost: true });
  assert.equal(monolithic.how, 'uploaded');
  assert.deepEqual(await client.blobs.get(repo, monolithic.digest), Buffer.from('one request'));
});

test('a blob that is missing or keeps failing gives an error naming the URL, never data', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const proxy = await startFaultProxy(t, reg.url);
  const client = new RegistryClient({ retries: 2, backoffMs: 5 });
  t.after(() => client.close());
  const repo = { registry: proxy.hostPort, repository: 'io/bad' };
  const { digest } = await client.blobs.upload(repo, blob);
  const missing = sha256Digest(Buffer.from('missing'));
  await assert.rejects(HttpRangeSource.open(client, repo, missing),
    new RegExp(`HEAD ${proxy.url}/v2/io/bad/blobs/${missing}: 404 BLOB_UNKNOWN`));

  const src = new HttpRangeSource(client, repo, digest, blob.length);
  proxy.inject({ kind: 'truncate' }, { times: 100 });
  const dst = new Uint8Array(10_000).fill(0xee);
  await assert.rejects(src.read(dst, 0), new RegExp(`GET ${proxy.url}/v2/io/bad/blobs/${digest}: .*gave up after 3 attempts`));
  proxy.clear();
  // A size that disagrees with the registry is caught by the Content-Range check.
  const wrongSize = new HttpRangeSource(client, repo, digest, blob.length + 1);
  await assert.rejects(wrongSize.read(new Uint8Array(10), 0), /blob size is 200001, expected 200002/);
});
