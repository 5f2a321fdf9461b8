/**
 * `dadi image info`: the vector layers pushed as an overlaybd image into the embedded registry,
 * inspected through a counting proxy, so the bytes the command says attach fetched are checked
 * against the Range requests the registry actually answered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runDadi, tempDir, vector } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { buildObdImage, pushObdImage, writeObdLayout } from './fixture.ts';

const LAYERS = ['A.lz4.bs4.tar.zlsmt', 'B.zstd.bs4.zlsmt'];

interface InfoJson {
  reference: string; source: string; manifestDigest: string; configDigest: string; diskSize: number; writable: boolean;
  imageBytes: number; refillUnit: number;
  layers: Array<{ index: number; blobDigest: string; blobSize: number; version: string; wrappers: string[]; uuid: string;
    parentUuid: string; virtualSize: number; segments: number; attach: { bytes: number; requests: number } }>;
  attach: { bytes: number; requests: number; metadataBytes: number; metadataRequests: number };
  stats: { layers: Array<{ blobDigest: string; fetched: { bytes: number; requests: number } }> };
}

/** Bytes the registry was asked for per blob: the sum of the Range lengths of blob GETs. */
function rangeBytesByBlob(proxy: FaultProxy, blobs: readonly string[]): Map<string, { bytes: number; requests: number }> {
  const out = new Map<string, { bytes: number; requests: number }>();
  for (const e of proxy.log) {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(e.url);
    if (e.method !== 'GET' || !m || !blobs.includes(m[1]!)) continue;
    const r = /^bytes=(\d+)-(\d+)$/.exec(String(e.headers.range ?? ''));
    assert.ok(r, `blob GET ${e.url} without a bounded Range (${String(e.headers.range)})`);
    const cur = out.get(m[1]!) ?? { bytes: 0, requests: 0 };
    cur.bytes += Number(r[2]) - Number(r[1]) + 1;
    cur.requests++;
    out.set(m[1]!, cur);
  }
  return out;
}

test('image info --json reports the layers, their sizes, and exactly the bytes attach fetched', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage(LAYERS.map(vector));
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', img);
  const proxy = await startFaultProxy(t, reg.url);
  const cache = join(await tempDir(t), 'cache');
  const ref = `${proxy.hostPort}/vec/ab:v1`;

  const run = await runDadi(['image', 'info', ref, '--json', '--cache-dir', cache, '--refill-unit', '4K']);
  assert.equal(run.code, 0, run.stderr);
  const info = JSON.parse(run.stdout.toString()) as InfoJson;
  assert.equal(info.reference, ref);
  assert.equal(info.source, 'registry');
  assert.equal(info.manifestDigest, img.digest);
  assert.equal(info.configDigest, img.manifestJson.config.digest);
  assert.equal(info.diskSize, 1 << 30);
  assert.equal(info.writable, false);
  assert.equal(info.refillUnit, 4096);
  assert.equal(info.imageBytes, img.layers.reduce((s, l) => s + l.size, 0));
  assert.deepEqual(info.layers.map((l) => [l.index, l.blobDigest, l.blobSize, l.version]),
    img.layers.map((l, i) => [i, l.digest, l.size, '0.1.0']));
  assert.deepEqual(info.layers.map((l) => l.wrappers), [['tar', 'zfile(lz4, 4096, crc)'], ['zfile(zstd, 4096, crc)']]);
  assert.deepEqual(info.layers.map((l) => [l.uuid.toLowerCase(), l.parentUuid.toLowerCase()]), [
    ['5ca1ab1e-0000-4000-8000-000000000001', '00000000-0000-0000-0000-000000000000'],
    ['5ca1ab1e-0000-4000-8000-000000000002', '5ca1ab1e-0000-4000-8000-000000000001'],
  ]);
  for (const l of info.layers) {
    assert.equal(l.virtualSize, 1 << 30);
    assert.ok(l.segments > 0, `layer ${l.index} has segments`);
  }

  // What the registry served, counted at the proxy, is what the command reports.
  const blobs = img.layers.map((l) => l.digest);
  const served = rangeBytesByBlob(proxy, blobs);
  for (const l of info.layers) {
    const s = served.get(l.blobDigest);
    assert.ok(s, `layer ${l.index} was read from the registry`);
    assert.deepEqual(l.attach, { ...l.attach, bytes: s.bytes, requests: s.requests });
    assert.ok(l.attach.bytes < l.blobSize / 4, `layer ${l.index}: attach read ${l.attach.bytes} of ${l.blobSize} bytes (only headers and index)`);
  }
  const layerBytes = info.layers.reduce((s, l) => s + l.attach.bytes, 0);
  assert.equal(info.attach.bytes, layerBytes + info.attach.metadataBytes);
  assert.equal(info.attach.metadataBytes, img.config.length, 'the manifest is counted apart from the config blob');
  assert.deepEqual(info.stats.layers.map((l) => l.fetched.bytes), info.layers.map((l) => l.attach.bytes));

  // Attaching again with the same cache reads the index from disk: no layer bytes move.
  proxy.log.length = 0;
  const again = await runDadi(['image', 'info', ref, '--json', '--cache-dir', cache, '--refill-unit', '4K']);
  assert.equal(again.code, 0, again.stderr);
  const info2 = JSON.parse(again.stdout.toString()) as InfoJson;
  assert.deepEqual(info2.layers.map((l) => l.attach.bytes), [0, 0]);
  assert.equal(rangeBytesByBlob(proxy, blobs).size, 0, 'no layer blob requested on the cached attach');
});

test('image info prints a readable report, and refuses an image without overlaybd annotations', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage(LAYERS.map(vector));
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', img);
  const plain = await buildObdImage([vector('A.lsmt')], { plain: true });
  await pushObdImage(reg.hostPort, 'vec/plain', 'v1', plain);
  const cache = join(await tempDir(t), 'cache');

  const run = await runDadi(['image', 'info', `${reg.hostPort}/vec/ab:v1`, '--cache-dir', cache]);
  assert.equal(run.code, 0, run.stderr);
  const text = run.stdout.toString();
  assert.match(text, new RegExp(`^manifest: +${img.digest} `, 'm'));
  assert.match(text, /^disk size: +1\.00 GiB \(1073741824 B\)$/m);
  assert.match(text, new RegExp(`^layer 0: ${img.layers[0]!.digest}$`, 'm'));
  assert.match(text, /^ {2}wrappers {3}tar > zfile\(lz4, 4096, crc\)$/m);
  assert.match(text, /^ {2}wrappers {3}zfile\(zstd, 4096, crc\)$/m);
  assert.match(text, /^attach: .* request\(s\) \(manifest\+config /m);
  assert.match(text, /^cache: +.*refill unit 262144/m);

  const refused = await runDadi(['image', 'info', `${reg.hostPort}/vec/plain:v1`, '--cache-dir', cache]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /is not a dadi\/overlaybd image: layer 0 \(sha256:[0-9a-f]{64}\) has no containerd\.io\/snapshot\/overlaybd\/blob-digest annotation/);
  assert.match(refused.stderr, /dadi convert/);

  const missing = await runDadi(['image', 'info', `${reg.hostPort}/vec/nothing:v1`, '--cache-dir', cache]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /vec\/nothing/);
});

test('image info reads credentials from $DOCKER_CONFIG for a token-auth registry; wrong ones fail clearly', async (t) => {
  const creds = { username: 'alice', password: 's3cret' };
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'token', ...creds } });
  const img = await buildObdImage(LAYERS.map(vector));
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', img, creds);
  const dir = await tempDir(t);
  const config = join(dir, 'docker');
  await mkdir(config);
  const auth = (user: string, pass: string): Promise<void> => writeFile(join(config, 'config.json'),
    JSON.stringify({ auths: { [reg.hostPort]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } } }));
  const env = { DOCKER_CONFIG: config };
  const args = ['image', 'info', `${reg.hostPort}/vec/ab:v1`, '--json', '--cache-dir', join(dir, 'cache')];

  await auth('alice', 's3cret');
  const ok = await runDadi(args, { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout.toString()) as InfoJson).manifestDigest, img.digest);

  await auth('alice', 'wrong');
  const bad = await runDadi(args, { env });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^dadi: .*401.*/m);
  assert.match(bad.stderr, new RegExp(reg.hostPort.replace(/\./g, '\\.')));
});

test('image info of an OCI layout (oci:DIR:TAG) reads the local blobs and fetches nothing', async (t) => {
  const dir = await tempDir(t);
  const img = await buildObdImage(LAYERS.map(vector));
  await writeObdLayout(join(dir, 'layout'), 'v1', img);
  const run = await runDadi(['image', 'info', `oci:${join(dir, 'layout')}:v1`, '--json']);
  assert.equal(run.code, 0, run.stderr);
  const info = JSON.parse(run.stdout.toString()) as InfoJson;
  assert.equal(info.source, 'oci-layout');
  assert.equal(info.manifestDigest, img.digest);
  assert.deepEqual(info.layers.map((l) => [l.blobDigest, l.wrappers.length, l.attach.bytes]),
    img.layers.map((l, i) => [l.digest, i === 0 ? 2 : 1, 0]));
  assert.equal(info.attach.bytes, 0);
});
