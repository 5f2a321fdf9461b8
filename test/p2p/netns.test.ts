/**
 * The multi-host test: eight hosts, each in its own network namespace behind a 100 Mbit/s tbf
 * link, a `docker-registry` in its own namespace behind `dadi p2p root`, every host attaching
 * the same image and reading the same trace at once through its P2P agent, while a host in the
 * middle of the largest blob's tree is killed. Every other host reads exactly the image's bytes;
 * the registry's access log shows at most 1.2 copies of each blob; a request without the peer
 * token is refused with 401.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { openLocalImage } from '../../src/image/local.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { startDockerRegistry } from '../helpers/registry.ts';
import { buildObdImage, generateLayer, pushObdImage } from '../image/remote/fixture.ts';
import { runCluster, type ClusterImage } from './netns-cluster.ts';

const CHUNK = 256 << 10;

export async function clusterImage(t: Parameters<typeof tempDir>[0], chunks: number): Promise<{ image: ClusterImage; expected: string }> {
  const dir = await tempDir(t);
  const l1 = await generateLayer(dir, { chunks, chunkSize: CHUNK, virtualSize: 1 << 30, seed: 1, incompressible: true });
  const l2 = await generateLayer(dir, { chunks: Math.ceil(chunks / 4), chunkSize: CHUNK, virtualSize: 1 << 30, seed: 7, incompressible: true });
  const img = await buildObdImage([l1.path, l2.path]);
  const reg = await startDockerRegistry(t);
  await pushObdImage(reg.hostPort, 'p2p/app', 'v1', img);
  await reg.stop();
  const ranges: Array<[number, number]> = [...l1.offsets, ...l2.offsets].map((o) => [o, CHUNK]);
  const disk = await openLocalImage([l1.path, l2.path]);
  const hash = createHash('sha256');
  for (const [o, n] of ranges) {
    const b = Buffer.alloc(n);
    await disk.read(b, o);
    hash.update(b);
  }
  await disk.close();
  const blobs = [...img.layers].sort((a, b) => b.size - a.size).map((l) => l.digest);
  return { image: { storage: join(reg.root, 'data'), repoTag: 'p2p/app:v1', blobs, ranges }, expected: hash.digest('hex') };
}

test('eight hosts in network namespaces read one image at once through the P2P tree; the registry serves one copy; a killed mid-tree host fails no read', {
  timeout: 600_000,
}, async (t) => {
  if (!requireSystem(t, { root: true, commands: ['ip', 'tc', 'curl', 'docker-registry'], paths: ['dist/cli/main.js'] })) return;
  const { image, expected } = await clusterImage(t, 48);
  const run = await runCluster({ hosts: 8, mode: 'p2p', rate: '100mbit', fanout: 2, killMidTreeAfterMs: 300, image, workDir: join(await tempDir(t), 'cluster') });
  t.diagnostic(JSON.stringify({ seconds: run.seconds, killed: run.killed, registry: Object.fromEntries(run.registryBytes), oneCopy: Object.fromEntries(run.oneCopy),
    hosts: run.hosts.map((h) => ({ host: h.host, seconds: h.seconds, served: h.served, killed: h.killed, error: h.error?.slice(0, 200) })) }));
  for (const h of run.hosts) {
    if (h.killed) continue;
    assert.equal(h.error, undefined, `${h.host} failed: ${h.error}`);
    assert.equal(h.sha256, expected, `${h.host} read the wrong bytes`);
  }
  assert.equal(run.hosts.filter((h) => h.sha256 === expected).length, run.killed && run.hosts.some((h) => h.killed && h.sha256) ? 8 : 7);
  for (const d of image.blobs) {
    const one = run.oneCopy.get(d) ?? 0;
    const got = run.registryBytes.get(d) ?? 0;
    assert.ok(one > 0, `the lone host fetched ${d}`);
    assert.ok(got <= 1.2 * one, `the registry served ${got} bytes of ${d}, one copy is ${one}`);
  }
  assert.equal(run.unauthenticatedStatus, 401, 'a peer without the token is refused');
});
