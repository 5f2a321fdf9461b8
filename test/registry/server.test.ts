/**
 * The embedded registry's protocol details, over raw HTTP: digest verification, name checks,
 * ranges, chunked-upload ordering, manifest reference checks, and surviving aborted uploads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { sha256Digest } from '../../src/registry/digest.ts';
import { MediaType } from '../../src/registry/media-types.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { buildImage, descriptor, pseudoRandom } from './image-fixture.ts';

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** Raw request with the path sent exactly as given (fetch would normalise `..`). */
function raw(base: string, method: string, path: string, body?: Uint8Array, headers: Record<string, string> = {}): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function errorCode(r: Reply): string | undefined {
  return (JSON.parse(r.body.toString()) as { errors: { code: string }[] }).errors[0]?.code;
}

async function blobFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(root, 'blobs', 'sha256'))) out.push(...await readdir(join(root, 'blobs', 'sha256', d)));
  return out;
}

test('/v2/ answers with the API version header', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const r = await raw(reg.url, 'GET', '/v2/');
  assert.equal(r.status, 200);
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
});

test('an upload whose content does not match the digest is refused and nothing is stored', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const data = pseudoRandom(1000, 3);
  const wrong = sha256Digest(Buffer.from('something else'));

  const start = await raw(reg.url, 'POST', '/v2/x/blobs/uploads/');
  assert.equal(start.status, 202);
  const location = start.headers.location as string;
  const put = await raw(reg.url, 'PUT', `${location}?digest=${wrong}`, data, { 'content-type': 'application/octet-stream' });
  assert.equal(put.status, 400);
  assert.equal(errorCode(put), 'DIGEST_INVALID');
  assert.equal((await raw(reg.url, 'HEAD', `/v2/x/blobs/${wrong}`)).status, 404);
  assert.equal((await raw(reg.url, 'HEAD', `/v2/x/blobs/${sha256Digest(data)}`)).status, 404);
  assert.deepEqual(await blobFiles(reg.root), []);
  // The failed session is gone.
  assert.equal((await raw(reg.url, 'PUT', `${location}?digest=${sha256Digest(data)}`, data)).status, 404);

  const mono = await raw(reg.url, 'POST', `/v2/x/blobs/uploads/?digest=${wrong}`, data);
  assert.equal(mono.status, 400);
  assert.equal(errorCode(mono), 'DIGEST_INVALID');
  assert.deepEqual(await blobFiles(reg.root), []);
  assert.deepEqual(await readdir(join(reg.root, 'uploads')), []);

  const ok = await raw(reg.url, 'POST', `/v2/x/blobs/uploads/?digest=${sha256Digest(data)}`, data);
  assert.equal(ok.status, 201);
  assert.equal(ok.headers['docker-content-digest'], sha256Digest(data));
  assert.deepEqual(await blobFiles(reg.root), [sha256Digest(data).slice(7)]);
});

test('hostile and invalid names are refused without touching the disk outside the root', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const d = sha256Digest(Buffer.from('x'));
  for (const path of [
    '/v2/../../etc/manifests/latest', '/v2/a/../../../tmp/blobs/uploads/', '/v2/%2e%2e/manifests/latest',
    '/v2/UPPER/tags/list', '/v2/a//b/manifests/latest', '/v2/.hidden/blobs/uploads/', `/v2/a/_links/blobs/${d}`,
  ]) {
    const r = await raw(reg.url, path.includes('uploads') ? 'POST' : 'GET', path);
    assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`);
    if (r.status === 400) assert.equal(errorCode(r), 'NAME_INVALID', path);
  }
  const badTag = await raw(reg.url, 'PUT', '/v2/a/manifests/..', Buffer.from('{}'));
  assert.equal(badTag.status, 400);
  const badDigest = await raw(reg.url, 'GET', '/v2/a/blobs/sha256:..%2f..%2fetc');
  assert.equal(badDigest.status, 400);
  assert.equal(errorCode(badDigest), 'DIGEST_INVALID');
  assert.deepEqual((await readdir(reg.root)).sort(), ['blobs', 'repositories', 'uploads']);
  assert.deepEqual(await readdir(join(reg.root, 'repositories')), []);
});

test('blob ranges: 206 with Content-Range, suffix ranges, 416 when unsatisfiable', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const data = pseudoRandom(5000, 9);
  const digest = sha256Digest(data);
  assert.equal((await raw(reg.url, 'POST', `/v2/r/blobs/uploads/?digest=${digest}`, data)).status, 201);
  const part = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`, undefined, { range: 'bytes=100-199' });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], 'bytes 100-199/5000');
  assert.deepEqual(part.body, data.subarray(100, 200));
  const suffix = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`, undefined, { range: 'bytes=-10' });
  assert.equal(suffix.headers['content-range'], 'bytes 4990-4999/5000');
  assert.deepEqual(suffix.body, data.subarray(4990));
  const open = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`, undefined, { range: 'bytes=4000-' });
  assert.deepEqual(open.body, data.subarray(4000));
  const clipped = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`, undefined, { range: 'bytes=4990-9999' });
  assert.equal(clipped.headers['content-range'], 'bytes 4990-4999/5000');
  const bad = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`, undefined, { range: 'bytes=5000-5001' });
  assert.equal(bad.status, 416);
  assert.equal(bad.headers['content-range'], 'bytes */5000');
  const whole = await raw(reg.url, 'GET', `/v2/r/blobs/${digest}`);
  assert.equal(whole.status, 200);
  assert.deepEqual(whole.body, data);
  const head = await raw(reg.url, 'HEAD', `/v2/r/blobs/${digest}`);
  assert.equal(head.headers['content-length'], '5000');
  // Not linked into another repository: unknown there.
  assert.equal((await raw(reg.url, 'GET', `/v2/other/blobs/${digest}`)).status, 404);
});

test('chunked uploads must arrive in order (416 otherwise) and then complete', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const data = pseudoRandom(3000, 5);
  const start = await raw(reg.url, 'POST', '/v2/c/blobs/uploads/');
  let loc = start.headers.location as string;
  const first = await raw(reg.url, 'PATCH', loc, data.subarray(0, 1000), { 'content-range': '0-999' });
  assert.equal(first.status, 202);
  assert.equal(first.headers.range, '0-999');
  loc = first.headers.location as string;
  const gap = await raw(reg.url, 'PATCH', loc, data.subarray(1500, 2000), { 'content-range': '1500-1999' });
  assert.equal(gap.status, 416);
  assert.equal(gap.headers.range, '0-999');
  const overlap = await raw(reg.url, 'PATCH', loc, data.subarray(500, 1500), { 'content-range': '500-1499' });
  assert.equal(overlap.status, 416);
  const lying = await raw(reg.url, 'PATCH', loc, data.subarray(1000, 1500), { 'content-range': '1000-1999' });
  assert.equal(lying.status, 400);
  const status = await raw(reg.url, 'GET', loc);
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, '0-999');
  const second = await raw(reg.url, 'PATCH', loc, data.subarray(1000, 2000), { 'content-range': '1000-1999' });
  assert.equal(second.status, 202);
  const streamed = await raw(reg.url, 'PATCH', loc, data.subarray(2000, 2500));
  assert.equal(streamed.headers.range, '0-2499');
  const done = await raw(reg.url, 'PUT', `${loc}?digest=${sha256Digest(data)}`, data.subarray(2500));
  assert.equal(done.status, 201);
  assert.deepEqual((await raw(reg.url, 'GET', `/v2/c/blobs/${sha256Digest(data)}`)).body, data);
  // A session belongs to its repository.
  const s2 = await raw(reg.url, 'POST', '/v2/c/blobs/uploads/');
  const id = (s2.headers.location as string).split('/').pop()!;
  assert.equal((await raw(reg.url, 'PATCH', `/v2/d/blobs/uploads/${id}`, data)).status, 404);
});

test('manifests: blobs must exist first, digest references must match, deletes remove tags', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const layer = pseudoRandom(100, 1);
  const image = buildImage([layer]);
  const put = (ref: string, body: Buffer, type: string = MediaType.ociManifest): Promise<Reply> =>
    raw(reg.url, 'PUT', `/v2/m/manifests/${ref}`, body, { 'content-type': type });
  const early = await put('v1', image.manifest);
  assert.equal(early.status, 400);
  assert.equal(errorCode(early), 'MANIFEST_BLOB_UNKNOWN');
  for (const b of [layer, image.config]) {
    assert.equal((await raw(reg.url, 'POST', `/v2/m/blobs/uploads/?digest=${sha256Digest(b)}`, b)).status, 201);
  }
  assert.equal(errorCode(await put('sha256:' + '0'.repeat(64), image.manifest)), 'DIGEST_INVALID');
  assert.equal(errorCode(await put('v1', Buffer.from('not json'))), 'MANIFEST_INVALID');
  assert.equal(errorCode(await put('v1', image.manifest, MediaType.dockerManifest)), 'MANIFEST_INVALID');
  const ok = await put('v1', image.manifest);
  assert.equal(ok.status, 201);
  assert.equal(ok.headers['docker-content-digest'], image.digest);
  const got = await raw(reg.url, 'GET', '/v2/m/manifests/v1');
  assert.equal(got.headers['content-type'], MediaType.ociManifest);
  assert.equal(got.headers['docker-content-digest'], image.digest);
  assert.deepEqual(got.body, image.manifest);
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex,
    manifests: [descriptor(MediaType.ociManifest, Buffer.from('{"other":1}'))] }));
  assert.equal(errorCode(await put('idx', index, MediaType.ociIndex)), 'MANIFEST_BLOB_UNKNOWN');

  const catalog = await raw(reg.url, 'GET', '/v2/_catalog');
  assert.deepEqual(JSON.parse(catalog.body.toString()), { repositories: ['m'] });
  await put('v2', image.manifest);
  const page = await raw(reg.url, 'GET', '/v2/m/tags/list?n=1');
  assert.deepEqual(JSON.parse(page.body.toString()), { name: 'm', tags: ['v1'] });
  assert.equal(page.headers.link, '</v2/m/tags/list?n=1&last=v1>; rel="next"');

  assert.equal((await raw(reg.url, 'DELETE', `/v2/m/manifests/${image.digest}`)).status, 202);
  assert.equal((await raw(reg.url, 'GET', '/v2/m/manifests/v1')).status, 404);
  assert.deepEqual(JSON.parse((await raw(reg.url, 'GET', '/v2/m/tags/list')).body.toString()).tags, []);
  assert.equal(errorCode(await raw(reg.url, 'GET', '/v2/nobody/tags/list')), 'NAME_UNKNOWN');
});

test('a client vanishing mid-upload leaves the session at its last good offset and the server serving', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const start = await raw(reg.url, 'POST', '/v2/abort/blobs/uploads/');
  const loc = start.headers.location as string;
  const u = new URL(reg.url);
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: 'PATCH', path: loc,
      headers: { 'content-length': '100000', 'content-range': '0-99999' } });
    req.on('error', () => resolve());
    req.write(Buffer.alloc(30_000, 1), () => setTimeout(() => { req.destroy(); resolve(); }, 50));
  });
  await new Promise((r) => setTimeout(r, 100));
  const status = await raw(reg.url, 'GET', loc);
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, '0-0');
  assert.equal((await raw(reg.url, 'GET', '/v2/')).status, 200);
});

test('idle upload sessions are swept with their data; a restart clears leftovers', async (t) => {
  const reg = await startEmbeddedRegistry(t, { uploadIdleMs: 1000 });
  const start = await raw(reg.url, 'POST', '/v2/idle/blobs/uploads/');
  const loc = start.headers.location as string;
  assert.equal((await raw(reg.url, 'PATCH', loc, Buffer.from('abc'))).status, 202);
  assert.equal(await reg.server.sweepUploads(Date.now()), 0);
  assert.equal(await reg.server.sweepUploads(Date.now() + 1500), 1);
  assert.equal((await raw(reg.url, 'GET', loc)).status, 404);
  assert.deepEqual(await readdir(join(reg.root, 'uploads')), []);

  const s2 = await raw(reg.url, 'POST', '/v2/idle/blobs/uploads/');
  await raw(reg.url, 'PATCH', s2.headers.location as string, Buffer.from('left behind'));
  await reg.stop();
  const again = await startEmbeddedRegistry(t, { root: reg.root });
  assert.deepEqual(await readdir(join(again.root, 'uploads')), []);
});

test('any chunking of an upload through the client stores exactly the bytes (property)', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const { RegistryClient } = await import('../../src/registry/client.ts');
  const fc = (await import('fast-check')).default;
  const client = new RegistryClient();
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'prop' };
  await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 1, max: 7000 }), fc.integer(),
    async (size, chunkSize, seed) => {
      const data = pseudoRandom(size, seed);
      const r = await client.blobs.upload(repo, data, { chunkSize, skipExisting: false });
      assert.equal(r.digest, sha256Digest(data));
      assert.deepEqual(await client.blobs.get(repo, r.digest, size), data);
    }), { numRuns: 25 });
});
