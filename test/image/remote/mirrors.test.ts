/**
 * Registry mirrors in front of the origin, with real `docker-registry` processes: the origin
 * (behind a counting proxy, whose address is the registry name images use) and a second
 * `docker-registry` configured as its pull-through cache (`proxy.remoteurl`). Reads go through
 * the mirror while it works; a dead mirror, a slow one (past the per-upstream timeout) and one
 * answering 500 make reads fall back to the origin without failing, and the bytes are right:
 * every read equals the same read of the image from the origin alone, and the background
 * download's sha256 check of each whole blob passes.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openRemoteImage, type RemoteImage, type RemoteImageOptions } from '../../../src/image/remote.ts';
import type { MirrorSpec } from '../../../src/image/remote/mirrors.ts';
import { requireSystem, tempDir, vector } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { freePort, startDockerRegistry } from '../../helpers/registry.ts';
import { buildObdImage, pushObdImage } from './fixture.ts';

const LAYERS = [vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')];
/** Ranges of the disk compared: the start (superblock, group descriptors, inode tables) and scattered blocks. */
const RANGES: Array<[number, number]> = [[0, 8 << 20], [64 << 20, 1 << 20], [300 << 20, 2 << 20], [(1 << 30) - (1 << 20), 1 << 20]];

interface Setup { origin: FaultProxy; originUrl: string; ref: string; blobs: string[]; expected: Uint8Array[] }

async function setup(t: TestContext): Promise<Setup> {
  const reg = await startDockerRegistry(t);
  const img = await buildObdImage(LAYERS);
  await pushObdImage(reg.hostPort, 'vec/ext4', 'v1', img);
  const origin = await startFaultProxy(t, reg.url);
  const direct = await open(t, `${reg.hostPort}/vec/ext4:v1`, {});
  const expected = await readRanges(direct);
  await direct.close();
  return { origin, originUrl: reg.url, ref: `${origin.hostPort}/vec/ext4:v1`, blobs: img.layers.map((l) => l.digest), expected };
}

async function open(t: TestContext, ref: string, opts: RemoteImageOptions): Promise<RemoteImage> {
  const image = await openRemoteImage(ref, {
    cacheDir: join(await tempDir(t), 'cache'), logStatsOnClose: false, statsIntervalMs: 0,
    background: { enable: false }, ...opts,
  });
  t.after(() => image.close().catch(() => {}));
  return image;
}

async function readRanges(image: RemoteImage): Promise<Uint8Array[]> {
  return Promise.all(RANGES.map(async ([offset, length]) => {
    const buf = new Uint8Array(length);
    await image.disk.read(buf, offset);
    return buf;
  }));
}

function blobGets(proxy: FaultProxy, blobs: readonly string[]): number {
  return proxy.log.filter((e) => e.method === 'GET' && blobs.some((b) => e.url.includes(`/blobs/${b}`))).length;
}

/** Reads the ranges and downloads every blob whole (sha256-checked) through `mirrors`. */
async function readThrough(t: TestContext, s: Setup, mirrors: MirrorSpec[], timeoutMs = 1000): Promise<void> {
  const image = await open(t, s.ref, { mirrors, upstreamTimeoutMs: timeoutMs, background: { enable: true, delayMs: 60_000, maxBytesPerSec: 0 } });
  const got = await readRanges(image);
  for (let i = 0; i < RANGES.length; i++) assert.ok(Buffer.from(got[i]!).equals(s.expected[i]!), `range ${RANGES[i]!.join('+')} differs`);
  image.startBackground();
  const results = await image.downloaded();
  assert.equal(results.length, s.blobs.length);
  for (const r of results) assert.ok(r.ok, `background download of ${r.digest}: ${r.error?.message ?? 'incomplete'}`);
  await image.close();
}

test('a docker-registry pull-through mirror serves the blobs; with the mirror stopped reads fall back to the origin', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const s = await setup(t);
  const mirror = await startDockerRegistry(t, { proxyRemoteUrl: s.originUrl });
  const mirrorLog = await startFaultProxy(t, mirror.url);
  const spec = [{ host: s.origin.hostPort, endpoint: mirrorLog.url }];

  s.origin.log.length = 0;
  await readThrough(t, s, spec);
  assert.equal(blobGets(s.origin, s.blobs), 0, 'no layer blob was read from the origin directly');
  assert.ok(blobGets(mirrorLog, s.blobs) > 0, 'the layer blobs came through the mirror');

  await mirror.stop();
  s.origin.log.length = 0;
  await readThrough(t, s, spec);
  assert.ok(blobGets(s.origin, s.blobs) > 0, 'with the mirror down the blobs came from the origin');
});

test('a dead, a slow and a failing mirror: reads succeed from the origin and the bytes are right', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const s = await setup(t);
  const mirror = await startDockerRegistry(t, { proxyRemoteUrl: s.originUrl });

  const dead = { host: s.origin.hostPort, endpoint: `http://127.0.0.1:${await freePort()}` };
  s.origin.log.length = 0;
  await readThrough(t, s, [dead]);
  assert.ok(blobGets(s.origin, s.blobs) > 0, 'dead mirror: the origin served');

  const slow = await startFaultProxy(t, mirror.url);
  slow.inject({ kind: 'delay', ms: 3000 }, { match: (r) => (r.url ?? '').includes('/blobs/'), times: 1000 });
  s.origin.log.length = 0;
  const t0 = performance.now();
  await readThrough(t, s, [{ host: s.origin.hostPort, endpoint: slow.url }], 300);
  assert.ok(blobGets(s.origin, s.blobs) > 0, 'slow mirror: the origin served');
  // The slow mirror is skipped after its first timeout, not waited for on every read.
  assert.ok(blobGets(slow, s.blobs) <= 4, `the slow mirror was asked ${blobGets(slow, s.blobs)} times`);
  assert.ok(performance.now() - t0 < 20_000);

  const failing = await startFaultProxy(t, mirror.url);
  failing.inject({ kind: 'status', status: 500 }, { match: (r) => (r.url ?? '').includes('/blobs/'), times: 1000 });
  s.origin.log.length = 0;
  await readThrough(t, s, [failing.url].map((endpoint) => ({ host: s.origin.hostPort, endpoint })));
  assert.ok(blobGets(s.origin, s.blobs) > 0, 'failing mirror: the origin served');

  // Two mirrors, the first failing: the second (working) one serves, the origin does not.
  const good = await startFaultProxy(t, mirror.url);
  s.origin.log.length = 0;
  await readThrough(t, s, [{ host: s.origin.hostPort, endpoint: failing.url }, { host: s.origin.hostPort, endpoint: good.url }]);
  assert.equal(blobGets(s.origin, s.blobs), 0, 'the second mirror served');
  assert.ok(blobGets(good, s.blobs) > 0);
});
