/**
 * Verification and upstreams in order, together: a mirror that serves wrong bytes (a proxy in
 * front of the registry flipping a byte of every large blob response) is caught by the chunk
 * digest table, the bad range is refetched from the next upstream (the origin registry, through
 * the Refetchable contract of src/io/refetch.ts), and the reader sees only right bytes and no
 * failure: a lying mirror makes reads slower, never wrong and never failed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openRemoteImage } from '../../../src/image/remote.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { startFaultProxy } from '../../helpers/fault-proxy.ts';
import { startDockerRegistry } from '../../helpers/registry.ts';
import { buildObdImage, generateLayer, pushObdImage } from './fixture.ts';
import { openLocalProbe } from './probe.ts';

const MiB = 1 << 20;
const VSIZE = 64 * MiB;
const PIECE = 256 << 10;

test('a mirror that flips bytes: each bad chunk is refetched from the origin registry and every read is right', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const dir = await tempDir(t);
  const layer = await generateLayer(dir, { chunks: 12, chunkSize: MiB, virtualSize: VSIZE, incompressible: true, compress: 'none', table: true, seed: 11 });
  const img = await buildObdImage([layer.path], { tables: [layer.table] });
  const reg = await startDockerRegistry(t);
  await pushObdImage(reg.hostPort, 'verify/mirror', 'v1', img);
  const digest = img.layers[0]!.digest;
  const mirror = await startFaultProxy(t, reg.url);
  mirror.inject({ kind: 'corrupt', minBytes: (64 << 10) - 1 }, {
    match: (req) => req.method === 'GET' && (req.url ?? '').endsWith(`/blobs/${digest}`), times: Infinity,
  });
  const probe = await openLocalProbe([layer.path]);
  t.after(() => probe.close());

  const remote = await openRemoteImage(`${reg.hostPort}/verify/mirror:v1`, {
    cacheDir: join(dir, 'cache'), background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
    mirrors: [{ host: reg.hostPort, endpoint: mirror.url }], upstreamTimeoutMs: 5000,
  });
  t.after(() => remote.close());
  assert.equal(remote.info.layers[0]!.verified, true);

  const buf = Buffer.alloc(PIECE);
  let right = 0;
  for (let off = 0; off < VSIZE; off += PIECE) {
    await remote.disk.read(buf, off);
    assert.ok(buf.equals((await probe.read(off, PIECE)).bytes), `bytes at ${off} are the layer's`);
    right++;
  }
  assert.equal(right, VSIZE / PIECE);
  assert.ok(mirror.log.some((l) => l.fault === 'corrupt'), 'the mirror served (and corrupted) blob ranges');
  const v = remote.layers[0]!.verify!;
  assert.ok(v.mismatches >= 1 && v.failures === 0 && v.recovered === v.mismatches, `every mismatch recovered from the next upstream: ${JSON.stringify(v)}`);
});
