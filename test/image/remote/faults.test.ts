/**
 * Registry faults under an attached image, via a proxy between dadi and the embedded registry:
 * bytes flipped in transit are caught by the ZFile CRC (dropped from the cache, refetched once,
 * then EIO — never wrong data), and a registry that stops mid-read makes that NBD read fail with
 * EIO after the retries while `dadi serve` keeps running and serves again once it returns.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openRemoteImage } from '../../../src/image/remote.ts';
import { startRegistryServer } from '../../../src/registry/server/server.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { startServe } from '../../nbd/serve-process.ts';
import { buildObdImage, generateLayer, pushObdImage, type ObdImage } from './fixture.ts';
import { openLocalProbe, unitsOf, type LocalProbe } from './probe.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
const UNIT = 256 << 10;

interface Fixture { img: ObdImage; offsets: number[]; probe: LocalProbe; dir: string }

async function smallImage(t: TestContext): Promise<Fixture> {
  const dir = await tempDir(t);
  const layer = await generateLayer(dir, { chunks: 8, chunkSize: MiB, virtualSize: 1 << 30, incompressible: true });
  const img = await buildObdImage([layer.path]);
  const probe = await openLocalProbe([layer.path]);
  t.after(() => probe.close());
  return { img, offsets: layer.offsets, probe, dir };
}

/**
 * A 4 KiB read whose one compressed block lies inside a single refill unit not yet used and
 * covers that unit's middle byte, where the proxy's `corrupt` fault flips a bit.
 */
async function readHittingMidUnit(f: Fixture, avoid: Set<number>): Promise<{ offset: number; unit: number; bytes: Buffer }> {
  const size = f.img.layers[0]!.size;
  for (const c of f.offsets) {
    for (let k = 0; k < MiB / 4096; k++) {
      const got = await f.probe.read(c + k * 4096, 4096);
      const ranges = got.ranges[0]!;
      const units = unitsOf(ranges, UNIT);
      if (units.size !== 1) continue;
      const [u] = [...units] as [number];
      const mid = u * UNIT + (Math.min(UNIT, size - u * UNIT) >> 1);
      if (avoid.has(u) || !ranges.some(([a, b]) => a <= mid && mid < b)) continue;
      avoid.add(u);
      return { offset: c + k * 4096, unit: u, bytes: got.bytes };
    }
  }
  throw new Error('no 4 KiB read covers the middle of an unused refill unit');
}

function blobGets(proxy: FaultProxy, digest: string): Array<{ range: string; fault?: string }> {
  return proxy.log.filter((e) => e.method === 'GET' && e.url.endsWith(`/blobs/${digest}`))
    .map((e) => ({ range: String(e.headers.range), ...(e.fault ? { fault: e.fault } : {}) }));
}

test('bytes flipped in transit: refetched once and correct; flipped twice: EIO, and the cache kept nothing bad', async (t) => {
  const f = await smallImage(t);
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'gen/faults', 'v1', f.img);
  const proxy = await startFaultProxy(t, reg.url);
  const digest = f.img.layers[0]!.digest;
  const remote = await openRemoteImage(`${proxy.hostPort}/gen/faults:v1`, {
    cacheDir: join(f.dir, 'cache'), background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
  });
  t.after(() => remote.close());
  const onBlob = { match: (req: { method?: string; url?: string }) => req.method === 'GET' && (req.url ?? '').endsWith(digest) };
  const used = unitsOf(f.probe.attachRanges[0]!, UNIT);
  const buf = Buffer.alloc(4096);
  const unitRange = (u: number): string => `bytes=${u * UNIT}-${Math.min((u + 1) * UNIT, f.img.layers[0]!.size) - 1}`;

  // Once: the CRC fails, the cached blob is dropped, the refetch is good.
  const one = await readHittingMidUnit(f, used);
  proxy.log.length = 0;
  proxy.inject({ kind: 'corrupt' }, { ...onBlob, times: 1 });
  await remote.disk.read(buf, one.offset);
  assert.ok(buf.equals(one.bytes), 'the read returned the right bytes after refetching');
  assert.deepEqual(blobGets(proxy, digest), [{ range: unitRange(one.unit), fault: 'corrupt' }, { range: unitRange(one.unit) }]);
  assert.equal(remote.stats().layers[0]!.corruptRefetches, 1);

  // Twice: the refetch is bad too, so the read fails with EIO rather than return those bytes.
  const two = await readHittingMidUnit(f, used);
  proxy.log.length = 0;
  proxy.inject({ kind: 'corrupt' }, { ...onBlob, times: 2 });
  await assert.rejects(remote.disk.read(buf, two.offset), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'EIO');
    assert.match(err.message, new RegExp(`blob ${digest}: .*again after refetching`));
    return true;
  });
  assert.equal(blobGets(proxy, digest).length, 2);
  // The bad unit was not kept: the next read fetches it again, passes its CRC first time, and is right.
  proxy.log.length = 0;
  await remote.disk.read(buf, two.offset);
  assert.ok(buf.equals(two.bytes));
  assert.deepEqual(blobGets(proxy, digest), [{ range: unitRange(two.unit) }]);
  assert.equal(remote.stats().layers[0]!.corruptRefetches, 2, 'no corruption found on the clean read');
  // And the first read's unit, dropped with the blob, comes back right as well.
  await remote.disk.read(buf, one.offset);
  assert.ok(buf.equals(one.bytes));
});

test('registry stops mid-read: that NBD read fails with EIO after the retries, cached reads go on, and it serves again once the registry returns', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const f = await smallImage(t);
  const root = join(f.dir, 'registry');
  let reg = await startRegistryServer({ root, host: '127.0.0.1', port: 0 });
  const port = Number(reg.hostPort.split(':')[1]);
  t.after(() => reg.stop());
  await pushObdImage(reg.hostPort, 'gen/stop', 'v1', f.img);
  const proxy = await startFaultProxy(t, reg.url);
  const srv = await startServe(t, [`${proxy.hostPort}/gen/stop:v1`, '--listen', `unix:${join(f.dir, 's.sock')}`,
    '--cache-dir', join(f.dir, 'cache'), '--no-background']);
  const used = unitsOf(f.probe.attachRanges[0]!, UNIT);
  const cached = await readHittingMidUnit(f, used);
  const cold = await readHittingMidUnit(f, used);
  const qemuRead = async (offset: number): Promise<string> => {
    // qemu-io exits 1 when a read fails; its report is on stdout either way.
    return run('qemu-io', ['-r', '-f', 'raw', '-c', `read -v ${offset} 4096`, srv.info.uri], { timeout: 60_000 })
      .then((r) => r.stdout, (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`);
  };
  const hexOf = (b: Buffer): string => [...b.subarray(0, 16)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  assert.ok((await qemuRead(cached.offset)).includes(hexOf(cached.bytes)));

  // The next blob request waits 1 s at the proxy; the registry goes away meanwhile.
  const digest = f.img.layers[0]!.digest;
  proxy.inject({ kind: 'delay', ms: 1000 }, { match: (req) => (req.url ?? '').endsWith(digest) });
  const failing = qemuRead(cold.offset);
  await new Promise((r) => setTimeout(r, 300));
  await reg.stop();
  const out = await failing;
  assert.match(out, /read failed: Input\/output error/);
  assert.ok(blobGets(proxy, digest).length >= 2, 'the read was retried');
  // The server is alive and still serves what it has cached.
  assert.ok((await qemuRead(cached.offset)).includes(hexOf(cached.bytes)));

  reg = await startRegistryServer({ root, host: '127.0.0.1', port });
  const back = await qemuRead(cold.offset);
  assert.ok(back.includes(hexOf(cold.bytes)), `after the registry returned:\n${back}`);
  assert.equal(await srv.stop(), 0, srv.stderr());
});

test('truncated and reset responses are retried into the right bytes; responses slower than the timeout fail that read with EIO, then recover', async (t) => {
  const f = await smallImage(t);
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'gen/slow', 'v1', f.img);
  const proxy = await startFaultProxy(t, reg.url);
  const digest = f.img.layers[0]!.digest;
  const remote = await openRemoteImage(`${proxy.hostPort}/gen/slow:v1`, {
    cacheDir: join(f.dir, 'cache'), background: { enable: false }, logStatsOnClose: false,
    clientOptions: { backoffMs: 10, timeoutMs: 1000 },
  });
  t.after(() => remote.close());
  const onBlob = { match: (req: { url?: string }) => (req.url ?? '').endsWith(digest) };
  const used = unitsOf(f.probe.attachRanges[0]!, UNIT);
  const buf = Buffer.alloc(4096);

  for (const kind of ['truncate', 'reset'] as const) {
    const r = await readHittingMidUnit(f, used);
    proxy.log.length = 0;
    proxy.inject({ kind }, onBlob);
    await remote.disk.read(buf, r.offset);
    assert.ok(buf.equals(r.bytes), `right bytes after a ${kind}`);
    assert.equal(blobGets(proxy, digest)[0]!.fault, kind);
    assert.ok(blobGets(proxy, digest).length >= 2, `the ${kind} was retried`);
  }

  const slow = await readHittingMidUnit(f, used);
  proxy.inject({ kind: 'delay', ms: 2500 }, { ...onBlob, times: 10 });
  await assert.rejects(remote.disk.read(buf, slow.offset), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'EIO');
    assert.match(err.message, new RegExp(`blob ${digest}: upstream read of bytes \\d+-\\d+ failed: GET .*/blobs/${digest}: timed out .*\\(gave up after 4 attempts\\)`));
    return true;
  });
  proxy.clear();
  await remote.disk.read(buf, slow.offset);
  assert.ok(buf.equals(slow.bytes), 'right bytes once the registry answers in time');
});
