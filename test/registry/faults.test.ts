/**
 * Registry faults between the client and a real (embedded) registry, injected by a loopback
 * proxy: transient failures are retried a bounded number of times with backoff, permanent ones
 * fail at once, every failure names the URL and status, and no read ever returns wrong bytes.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { HttpRangeSource } from '../../src/registry/blob-source.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { pseudoRandom } from './image-fixture.ts';

const blob = pseudoRandom(64 * 1024, 77);

async function setup(t: TestContext, clientOpts: RegistryClientOptions = {}, serverOpts: Parameters<typeof startEmbeddedRegistry>[1] = {}) {
  const reg = await startEmbeddedRegistry(t, serverOpts);
  const direct = new RegistryClient(clientOpts.credentials ? { credentials: clientOpts.credentials } : {});
  t.after(() => direct.close());
  const { digest } = await direct.blobs.upload({ registry: reg.hostPort, repository: 'f' }, blob);
  const proxy = await startFaultProxy(t, reg.url);
  const client = new RegistryClient({ timeoutMs: 2000, retries: 3, backoffMs: 5, maxBackoffMs: 50, ...clientOpts });
  t.after(() => client.close());
  const repo = { registry: proxy.hostPort, repository: 'f' };
  return { reg, proxy, client, repo, digest, blobUrl: `${proxy.url}/v2/f/blobs/${digest}` };
}

const blobRequests = (p: FaultProxy): number => p.log.filter((e) => e.url.includes('/blobs/sha256:')).length;

test('5xx and 429 are retried (Retry-After honoured), then succeed', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'status', status: 503, body: '{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}' }, { times: 2 });
  s.proxy.inject({ kind: 'status', status: 429, headers: { 'retry-after': '0' } });
  assert.deepEqual(await s.client.blobs.get(s.repo, s.digest), blob);
  assert.equal(blobRequests(s.proxy), 4);
});

test('a persistent 503 fails after bounded retries with the URL, status and registry error; then recovers', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'status', status: 503, body: '{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}' }, { times: 100 });
  const started = Date.now();
  await assert.rejects(s.client.blobs.get(s.repo, s.digest), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.message, `GET ${s.blobUrl}: 503 UNAVAILABLE down for maintenance (gave up after 4 attempts)`);
    return true;
  });
  assert.equal(blobRequests(s.proxy), 4);
  await assert.rejects(s.client.blobs.head(s.repo, s.digest), new RegExp(`^RegistryError: HEAD ${s.blobUrl}: 503 \\(gave up after 4 attempts\\)$`));
  assert.ok(Date.now() - started < 2000);
  s.proxy.clear();
  assert.equal(await s.client.blobs.head(s.repo, s.digest), blob.length);
});

test('4xx answers are not retried', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'status', status: 403, body: '{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}' }, { times: 100 });
  await assert.rejects(s.client.blobs.get(s.repo, s.digest), new RegExp(`GET ${s.blobUrl}: 403 DENIED requested access`));
  assert.equal(blobRequests(s.proxy), 1);
});

test('a connection reset mid-body and a truncated body are retried; the bytes are right', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'reset' });
  s.proxy.inject({ kind: 'truncate' });
  const dst = new Uint8Array(20_000);
  await s.client.blobs.readRange(s.repo, s.digest, 1000, dst, blob.length);
  assert.deepEqual(Buffer.from(dst), blob.subarray(1000, 21_000));
  assert.equal(blobRequests(s.proxy), 3);
  s.proxy.inject({ kind: 'truncate' });
  assert.deepEqual(await s.client.blobs.get(s.repo, s.digest), blob);
});

test('short bodies are retried and, if they persist, fail clearly instead of returning short data', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'short' }, { times: 2 });
  const src = new HttpRangeSource(s.client, s.repo, s.digest, blob.length);
  const dst = new Uint8Array(8192);
  assert.equal(await src.read(dst, 4096), 8192);
  assert.deepEqual(Buffer.from(dst), blob.subarray(4096, 4096 + 8192));

  s.proxy.inject({ kind: 'short' }, { times: 100 });
  const poisoned = new Uint8Array(8192);
  await assert.rejects(src.read(poisoned, 0), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.match(err.message, new RegExp(`^GET ${s.blobUrl}: 206 body truncated: 4096 of 8192 bytes \\(asked for bytes=0-8191\\) \\(gave up after 4 attempts\\)$`));
    return true;
  });
});

test('a response slower than the timeout fails after bounded retries; a prompt one then succeeds', async (t) => {
  const s = await setup(t, { timeoutMs: 200, retries: 2 });
  s.proxy.inject({ kind: 'delay', ms: 600 }, { times: 100 });
  const started = Date.now();
  await assert.rejects(s.client.blobs.readRange(s.repo, s.digest, 0, new Uint8Array(100), blob.length), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.status, 0);
    assert.match(err.message, new RegExp(`^GET ${s.blobUrl}: .*timed out.*\\(gave up after 3 attempts\\)$`));
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 600 && elapsed < 5000, `took ${elapsed} ms`);
  s.proxy.clear();
  const dst = new Uint8Array(100);
  await s.client.blobs.readRange(s.repo, s.digest, 0, dst, blob.length);
  assert.deepEqual(Buffer.from(dst), blob.subarray(0, 100));
});

test('a registry coming back after refusing connections is reached by the retries', async (t) => {
  const s = await setup(t, { retries: 5, backoffMs: 100, maxBackoffMs: 400 });
  await s.proxy.stop();
  const port = Number(s.proxy.hostPort.split(':')[1]);
  // Nothing listens on the proxy port now: every attempt is ECONNREFUSED.
  await assert.rejects(s.client.blobs.head(s.repo, s.digest), /ECONNREFUSED.*gave up after 6 attempts/);
  // Start a proxy on the same port a little after the first attempt fails.
  const { FaultProxy } = await import('../helpers/fault-proxy.ts');
  const late = new FaultProxy();
  const head = s.client.blobs.head(s.repo, s.digest);
  await new Promise((r) => setTimeout(r, 150));
  await late.start(s.reg.url, port);
  t.after(() => late.stop());
  assert.equal(await head, blob.length);
});

test('200 for a range: a whole-blob answer is sliced; a wrong 200 body is refused, not retried', async (t) => {
  const s = await setup(t);
  s.proxy.inject({ kind: 'ignoreRange' });
  const dst = new Uint8Array(1000);
  await s.client.blobs.readRange(s.repo, s.digest, 5000, dst, blob.length);
  assert.deepEqual(Buffer.from(dst), blob.subarray(5000, 6000));

  s.proxy.inject({ kind: 'wrong200' }, { times: 100 });
  const before = blobRequests(s.proxy);
  await assert.rejects(s.client.blobs.readRange(s.repo, s.digest, 5000, new Uint8Array(1000), blob.length),
    new RegExp(`^RegistryError: GET ${s.blobUrl}: 200 answered 200 with a 1000-byte body for a partial range of a ${blob.length}-byte blob`));
  assert.equal(blobRequests(s.proxy) - before, 1);
});

test('a redirect to blob storage on another host does not carry the registry credentials', async (t) => {
  const creds = { username: 'u', password: 'p' };
  const s = await setup(t, { credentials: creds }, { auth: { kind: 'token', ...creds } });
  const seen: { url: string; authorization?: string }[] = [];
  const storage = createServer((req, res) => {
    seen.push({ url: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m) {
      const part = blob.subarray(Number(m[1]), Number(m[2]) + 1);
      res.writeHead(206, { 'content-range': `bytes ${m[1]}-${m[2]}/${blob.length}`, 'content-length': part.length });
      res.end(part);
    } else {
      res.writeHead(200, { 'content-length': blob.length });
      res.end(blob);
    }
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.2', r));
  t.after(() => new Promise<void>((r) => { storage.close(() => r()); storage.closeAllConnections(); }));
  const location = `http://127.0.0.2:${(storage.address() as AddressInfo).port}/bucket/blob?sig=abc`;
  const isBlobGet = (req: { method?: string; url?: string }): boolean => req.method === 'GET' && (req.url ?? '').includes('/blobs/sha256:');
  // Authenticate first (HEAD is not redirected), so the redirected GETs carry a token.
  assert.equal(await s.client.blobs.head(s.repo, s.digest), blob.length);
  s.proxy.inject({ kind: 'redirect', location }, { match: isBlobGet, times: 2 });

  assert.deepEqual(await s.client.blobs.get(s.repo, s.digest), blob);
  const dst = new Uint8Array(3000);
  await s.client.blobs.readRange(s.repo, s.digest, 100, dst, blob.length);
  assert.deepEqual(Buffer.from(dst), blob.subarray(100, 3100));

  assert.equal(seen.length, 2);
  for (const r of seen) {
    assert.equal(r.url, '/bucket/blob?sig=abc');
    assert.equal(r.authorization, undefined, 'Authorization must not be forwarded to another host');
  }
  const redirected = s.proxy.log.filter((e) => e.fault === 'redirect');
  assert.equal(redirected.length, 2);
  for (const e of redirected) assert.match(e.headers.authorization ?? '', /^Bearer /);

  // A redirect within the registry's own origin keeps the token (the registry still checks it).
  s.proxy.inject({ kind: 'redirect', location: `/v2/f/blobs/${s.digest}?moved=1` }, { match: isBlobGet });
  assert.deepEqual(await s.client.blobs.get(s.repo, s.digest), blob);
  const moved = s.proxy.log.find((e) => e.url.endsWith('?moved=1'))!;
  assert.match(moved.headers.authorization ?? '', /^Bearer /);
});

test('content that does not match its digest is refused: manifests by digest or tag, whole blobs', async (t) => {
  const s = await setup(t);
  const { buildImage } = await import('./image-fixture.ts');
  const image = buildImage([blob]);
  await s.client.blobs.upload(s.repo, image.config);
  const digest = await s.client.manifests.put(s.repo, 'v1', image.manifest, image.mediaType);
  const isManifest = (req: { url?: string }): boolean => (req.url ?? '').includes('/manifests/');
  s.proxy.inject({ kind: 'corrupt' }, { match: isManifest, times: 2 });
  await assert.rejects(s.client.manifests.get(s.repo, digest),
    new RegExp(`^RegistryError: GET ${s.proxy.url}/v2/f/manifests/${digest}: 200 manifest content has digest sha256:[0-9a-f]{64}, expected ${digest}$`));
  await assert.rejects(s.client.manifests.get(s.repo, 'v1'), new RegExp(`manifest content has digest sha256:[0-9a-f]{64}, expected ${digest}`));
  s.proxy.inject({ kind: 'corrupt' }, { match: (req) => (req.url ?? '').includes('/blobs/') });
  await assert.rejects(s.client.blobs.get(s.repo, s.digest), new RegExp(`^RegistryError: GET ${s.blobUrl}: 200 blob content has digest sha256:[0-9a-f]{64}, expected ${s.digest}$`));
  assert.equal((await s.client.manifests.get(s.repo, 'v1')).digest, digest);
});

test('a streamed download resumes with Range after a reset, and survives a registry ignoring the Range', async (t) => {
  const s = await setup(t);
  const collect = (): { chunks: Buffer[]; write: (c: Uint8Array) => void } => {
    const chunks: Buffer[] = [];
    return { chunks, write: (c) => { chunks.push(Buffer.from(c)); } };
  };
  s.proxy.inject({ kind: 'reset' });
  const a = collect();
  assert.equal(await s.client.blobs.download(s.repo, s.digest, a, blob.length), blob.length);
  assert.deepEqual(Buffer.concat(a.chunks), blob);
  const gets = s.proxy.log.filter((e) => e.method === 'GET' && e.url.includes('/blobs/'));
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.headers.range, undefined);
  assert.match(gets[1]!.headers.range ?? '', /^bytes=[1-9]\d*-$/, 'the second request resumes where the first stopped');

  s.proxy.inject({ kind: 'truncate' });
  s.proxy.inject({ kind: 'ignoreRange' });
  const b = collect();
  await s.client.blobs.download(s.repo, s.digest, b);
  assert.deepEqual(Buffer.concat(b.chunks), blob);

  s.proxy.inject({ kind: 'corrupt' });
  await assert.rejects(s.client.blobs.download(s.repo, s.digest, collect()),
    new RegExp(`GET ${s.blobUrl}: 200 blob content has digest sha256:[0-9a-f]{64}, expected ${s.digest} \\(discard the downloaded bytes\\)`));
});
