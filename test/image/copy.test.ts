/**
 * `dadi image copy`: a dadi image moves between registries and OCI layouts byte for byte — the
 * same manifest digest, the overlaybd annotations, uncompressed layers left uncompressed — so it
 * still attaches lazily where it lands. Within one registry blobs are mounted, not uploaded; a
 * second copy uploads nothing.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStackFromFiles } from '../../src/image/chain/files.ts';
import { copyImage } from '../../src/image/copy.ts';
import { openRemoteImage } from '../../src/image/remote.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, runDadi, tempDir, vector } from '../helpers/env.ts';
import { startDockerRegistry, startEmbeddedRegistry } from '../helpers/registry.ts';
import { buildObdImage, pushObdImage } from './remote/fixture.ts';

test('dadi image copy keeps the manifest digest and annotations across registries and layouts; same-registry blobs are mounted', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const a = await startEmbeddedRegistry(t);
  const b = await startDockerRegistry(t);
  const img = await buildObdImage([vector('A.lsmt'), vector('B.zstd.bs4.zlsmt')]);
  await pushObdImage(a.hostPort, 'team/app', 'v1', img);
  const blobBytes = img.layers.reduce((s, l) => s + l.size, 0) + img.config.length;
  const client = new RegistryClient({ insecure: true });
  t.after(() => client.close());

  // Same registry, another repository: every blob is mounted.
  const same = await copyImage(`${a.hostPort}/team/app:v1`, `${a.hostPort}/other/app:v1`, client);
  assert.equal(same.digest, img.digest);
  assert.deepEqual([same.blobs, same.mounted, same.uploadedBytes], [3, 3, 0]);

  // Another registry, through the CLI: every byte uploaded, the manifest's bytes unchanged.
  const r = await runDadi(['image', 'copy', '--json', `${a.hostPort}/team/app:v1`, `${b.hostPort}/mirror/app:v1-obd`]);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout.toString().trim().split('\n').pop()!) as { digest: string; uploadedBytes: number };
  assert.deepEqual([summary.digest, summary.uploadedBytes], [img.digest, blobBytes]);
  const copied = await client.manifests.get({ registry: b.hostPort, repository: 'mirror/app' }, 'v1-obd');
  assert.ok(copied.bytes.equals(img.manifest), 'the manifest is byte for byte the original (annotations included)');

  // Through an OCI layout and back; then a copy onto itself uploads nothing.
  const layout = join(await tempDir(t), 'layout');
  await copyImage(`${b.hostPort}/mirror/app:v1-obd`, `oci:${layout}:app`, client);
  const back = await copyImage(`oci:${layout}:app`, `${a.hostPort}/from-layout/app:v2`, client);
  assert.equal(back.digest, img.digest);
  const again = await copyImage(`${a.hostPort}/team/app:v1`, `${b.hostPort}/mirror/app:v1-obd`, client);
  assert.deepEqual([again.existing, again.uploadedBytes], [3, 0]);

  // The copy is still a lazily attachable dadi image.
  const remote = await openRemoteImage(`${b.hostPort}/mirror/app:v1-obd`, { cacheDir: await tempDir(t), background: { enable: false }, logStatsOnClose: false });
  t.after(() => remote.close());
  assert.deepEqual(remote.info.layers.map((l) => l.blobDigest), img.layers.map((l) => l.digest));
  const local = await openStackFromFiles([vector('A.lsmt'), vector('B.zstd.bs4.zlsmt')]);
  t.after(() => local.close());
  const [x, y] = [new Uint8Array(1 << 20), new Uint8Array(1 << 20)];
  await Promise.all([remote.disk.read(x, 0), local.read(y, 0)]);
  assert.ok(Buffer.from(x).equals(Buffer.from(y)), 'the copied image reads as the layers it was made of');
});
