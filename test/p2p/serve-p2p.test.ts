/**
 * `dadi serve REF --p2p-config FILE`: the served image's blobs come through the host's agent and
 * the root (the registry sees only the root), the agent serves peers with the token, and the
 * export's bytes equal `dadi cat` of the layers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { BlobCache } from '../../src/io/cache.ts';
import { startRoot } from '../../src/p2p/root.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir, vector } from '../helpers/env.ts';
import { startCountingProxy } from '../helpers/counting-proxy.ts';
import { freePort, startDockerRegistry } from '../helpers/registry.ts';
import { assertExportEquals } from '../image/remote/compare.ts';
import { buildObdImage, pushObdImage } from '../image/remote/fixture.ts';
import { startServe } from '../nbd/serve-process.ts';

test('dadi serve --p2p-config reads through the agent and the root; the export equals the layers', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry', 'nbdcopy', 'cmp'] })) return;
  const reg = await startDockerRegistry(t);
  const layers = [vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')];
  const img = await buildObdImage(layers);
  await pushObdImage(reg.hostPort, 'p2p/serve', 'v1', img);
  const counter = await startCountingProxy(t, reg.url);
  const dir = await tempDir(t);
  const cache = await BlobCache.open({ dir: join(dir, 'root-cache'), capacityBytes: 1 << 30, metricsRegistry: null });
  t.after(() => cache.close());
  const client = new RegistryClient({ insecure: true });
  t.after(() => client.close());
  const root = await startRoot({ listen: '127.0.0.1:0', token: 'serve-token', cache, client });
  t.after(() => root.close());
  const self = `127.0.0.1:${await freePort()}`;
  const config = join(dir, 'p2p.toml');
  await writeFile(config, `[p2p]\nself = "${self}"\nroot = "${root.address}"\npeers = ["${self}"]\ntoken = "serve-token"\n`);

  const srv = await startServe(t, [`${counter.hostPort}/p2p/serve:v1`, '--listen', `unix:${join(dir, 's.sock')}`, '--cache-dir', join(dir, 'cache'),
    '--no-background', '--p2p-config', config]);
  await assertExportEquals(t, srv.info.uri, layers);
  const digests = img.layers.map((l) => l.digest);
  assert.ok(root.server.stats.bytes > 0, 'the root served the layer blobs');
  assert.ok(counter.bytesFor(digests) <= root.server.stats.bytes, 'the registry sent layer bytes only to the root');
  const denied = await request(`http://${self}/blobs/${digests[0]}`, { headers: { 'x-dadi-repository': `${counter.hostPort}/p2p/serve`, 'x-dadi-blob-size': '1' } });
  assert.equal(denied.statusCode, 401);
  await denied.body.dump();
  assert.equal(await srv.stop(), 0, srv.stderr());
});
