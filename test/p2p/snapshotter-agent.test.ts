/**
 * `dadi snapshotter` with a `[p2p]` table runs the agent: it listens on `self`, refuses peers
 * without the token, and answers a Range request for a registry blob by fetching it through the
 * root (its tree parent for a one-member list) into its block cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { BlobCache } from '../../src/io/cache.ts';
import { startRoot } from '../../src/p2p/root.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir, vector } from '../helpers/env.ts';
import { freePort, startDockerRegistry } from '../helpers/registry.ts';
import { startSnapshotterDaemon } from '../helpers/snapshotter.ts';
import { buildObdImage, pushObdImage } from '../image/remote/fixture.ts';

test('the snapshotter\'s P2P agent serves blob ranges to token holders, fetched through the root', async (t) => {
  if (!requireSystem(t, { root: true, commands: ['docker-registry'] })) return;
  const reg = await startDockerRegistry(t);
  const layer = vector('ext4-L1.lsmt');
  const img = await buildObdImage([layer]);
  await pushObdImage(reg.hostPort, 'p2p/snap', 'v1', img);
  const dir = await tempDir(t);
  const cache = await BlobCache.open({ dir: join(dir, 'root-cache'), capacityBytes: 1 << 30, metricsRegistry: null });
  t.after(() => cache.close());
  const client = new RegistryClient({ insecure: true });
  t.after(() => client.close());
  const root = await startRoot({ listen: '127.0.0.1:0', token: 'snap-token', cache, client });
  t.after(() => root.close());
  const self = `127.0.0.1:${await freePort()}`;
  await writeFile(join(dir, 'token'), 'snap-token\n');
  const daemon = await startSnapshotterDaemon(t, {
    toml: `[p2p]\nself = "${self}"\nroot = "${root.address}"\npeers = ["${self}"]\ntokenFile = "${join(dir, 'token')}"\n`,
  });
  assert.match(await daemon.log(), /p2p agent serving/);

  const blob = img.layers[0]!;
  const headers = { 'x-dadi-repository': `${reg.hostPort}/p2p/snap`, 'x-dadi-blob-size': String(blob.size), range: 'bytes=4096-70000' };
  const denied = await request(`http://${self}/blobs/${blob.digest}`, { headers });
  assert.equal(denied.statusCode, 401);
  await denied.body.dump();
  const res = await request(`http://${self}/blobs/${blob.digest}`, { headers: { ...headers, authorization: 'Bearer snap-token' } });
  assert.equal(res.statusCode, 206);
  const got = Buffer.from(await res.body.arrayBuffer());
  assert.ok(got.equals((await readFile(layer)).subarray(4096, 70001)), 'the agent served the blob\'s bytes');
  assert.ok(root.server.stats.bytes > 0, 'through the root');
});
