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
import { join } from 'node:path';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { clusterImage, runCluster } from './netns-cluster.ts';

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
