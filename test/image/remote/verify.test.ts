/**
 * Verified lazy reads against a lying upstream: a real docker-registry behind a proxy that flips
 * one byte in the middle of every blob response over 64 KiB. With a chunk digest table, every
 * read either returns the layer's true bytes or fails with EIO (naming layer, chunk and upstream),
 * never wrong bytes, and the cache keeps nothing bad: once the proxy behaves, every read is right.
 * The control (the same layer without a table, uncompressed so no CRC helps) shows the proxy
 * does hand out wrong bytes, so the check above is not vacuous.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DigestTableRef } from '../../../src/format/tar/digest-table.ts';
import { openRemoteImage } from '../../../src/image/remote.ts';
import { cachePaths } from '../../../src/io/cache.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { startDockerRegistry, type TestRegistry } from '../../helpers/registry.ts';
import { startServe } from '../../nbd/serve-process.ts';
import { buildObdImage, generateLayer, pushObdImage } from './fixture.ts';
import { openLocalProbe, type LocalProbe } from './probe.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
const VSIZE = 64 * MiB;
const PIECE = 256 << 10;

interface Setup { reg: TestRegistry; proxy: FaultProxy; probe: LocalProbe; dir: string; ref: string; digest: string; table: DigestTableRef | undefined }

async function setup(t: TestContext, compress: 'none' | 'zstd', table: boolean, seed: number): Promise<Setup> {
  const dir = await tempDir(t);
  const layer = await generateLayer(dir, { chunks: 12, chunkSize: MiB, virtualSize: VSIZE, incompressible: true, compress, table, seed });
  const img = await buildObdImage([layer.path], { tables: [layer.table] });
  const reg = await startDockerRegistry(t);
  await pushObdImage(reg.hostPort, 'verify/app', 'v1', img);
  const proxy = await startFaultProxy(t, reg.url);
  const probe = await openLocalProbe([layer.path]);
  t.after(() => probe.close());
  return { reg, proxy, probe, dir, ref: `${proxy.hostPort}/verify/app:v1`, digest: img.layers[0]!.digest, table: layer.table };
}

/**
 * Flips the middle byte of every blob response larger than `over` bytes. The default (64 KiB - 1)
 * includes the 64 KiB refetch of a single chunk, so a refetch is corrupt too.
 */
function flipEveryBigBlobResponse(s: Setup, over = (64 << 10) - 1): void {
  s.proxy.inject({ kind: 'corrupt', minBytes: over }, {
    match: (req) => req.method === 'GET' && (req.url ?? '').endsWith(`/blobs/${s.digest}`), times: Infinity,
  });
}

/** Reads the whole disk in pieces: how many came back right, wrong, or failed (and the first failure). */
async function readAll(disk: { read(b: Uint8Array, o: number): Promise<void> }, probe: LocalProbe):
Promise<{ right: number; wrong: number; failed: number; firstError?: Error }> {
  const out: { right: number; wrong: number; failed: number; firstError?: Error } = { right: 0, wrong: 0, failed: 0 };
  const buf = Buffer.alloc(PIECE);
  for (let off = 0; off < VSIZE; off += PIECE) {
    try {
      await disk.read(buf, off);
    } catch (err) {
      out.failed++;
      out.firstError ??= err as Error;
      continue;
    }
    if (buf.equals((await probe.read(off, PIECE)).bytes)) out.right++;
    else out.wrong++;
  }
  return out;
}

for (const compress of ['none', 'zstd'] as const) {
  test(`${compress === 'none' ? 'uncompressed' : 'zstd'} layer with a digest table behind a byte-flipping proxy: EIO or the right bytes, never wrong ones; right again once the upstream behaves`, async (t) => {
    if (!requireSystem(t, { commands: ['docker-registry'] })) return;
    const s = await setup(t, compress, true, compress === 'none' ? 1 : 2);
    const remote = await openRemoteImage(s.ref, {
      cacheDir: join(s.dir, 'cache'), background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
    });
    t.after(() => remote.close());
    assert.equal(remote.info.layers[0]!.verified, true);
    flipEveryBigBlobResponse(s);
    const bad = await readAll(remote.disk, s.probe);
    assert.equal(bad.wrong, 0, 'no read returned wrong bytes');
    assert.ok(bad.failed >= 12, `reads of the fetched data failed (${bad.failed} failed, ${bad.right} right)`);
    const e = bad.firstError as NodeJS.ErrnoException;
    assert.equal(e.code, 'EIO');
    assert.match(e.message, new RegExp(`layer 0 \\(${s.digest}\\): chunk \\d+ \\(bytes \\d+\\.\\.\\d+\\) from .*${s.proxy.hostPort}.*does not match its digest`));
    assert.ok(s.proxy.log.some((l) => l.fault === 'corrupt'));
    const v = remote.layers[0]!.verify!;
    assert.ok(v.failures >= 12 && v.mismatches >= v.failures && v.recovered === 0, JSON.stringify(v));
    s.proxy.clear();
    const good = await readAll(remote.disk, s.probe);
    assert.deepEqual({ wrong: good.wrong, failed: good.failed }, { wrong: 0, failed: 0 }, 'the cache kept no bad bytes');
  });
}

test('a chunk that fails is refetched alone and used when the refetch is good (the proxy spares responses of exactly 64 KiB)', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const s = await setup(t, 'none', true, 5);
  const remote = await openRemoteImage(s.ref, {
    cacheDir: join(s.dir, 'cache'), background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
  });
  t.after(() => remote.close());
  flipEveryBigBlobResponse(s, 64 << 10);
  const r = await readAll(remote.disk, s.probe);
  assert.deepEqual({ wrong: r.wrong, failed: r.failed }, { wrong: 0, failed: 0 });
  const corrupt = s.proxy.log.filter((l) => l.fault === 'corrupt').length;
  const refetches = s.proxy.log.filter((l) => String(l.headers.range).match(/^bytes=(\d+)-(\d+)$/)
    && (() => { const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(String(l.headers.range))!; return Number(b) - Number(a) + 1 === 64 << 10; })()).length;
  assert.ok(corrupt >= 12, `the proxy corrupted ${corrupt} responses`);
  assert.ok(refetches >= 12, `single chunks were refetched (${refetches})`);
  const v = remote.layers[0]!.verify!;
  assert.ok(v.recovered >= 12 && v.failures === 0 && v.recovered === v.mismatches, JSON.stringify(v));
});

test('control: the same uncompressed layer without a table through the same proxy reads wrong bytes (what the table prevents)', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const s = await setup(t, 'none', false, 3);
  const remote = await openRemoteImage(s.ref, {
    cacheDir: join(s.dir, 'cache'), background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
  });
  t.after(() => remote.close());
  assert.equal(remote.info.layers[0]!.verified, false);
  flipEveryBigBlobResponse(s);
  const r = await readAll(remote.disk, s.probe);
  assert.ok(r.wrong > 0, `expected wrong bytes without a table (right ${r.right}, failed ${r.failed})`);
});

test('dadi serve + nbdcopy through the flipping proxy: the copy fails with EIO and the daemon logs layer, chunk and upstream; without faults the disk is the layer', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry', 'nbdcopy'] })) return;
  const s = await setup(t, 'none', true, 4);
  const srv = await startServe(t, [s.ref, '--listen', `unix:${join(s.dir, 's.sock')}`, '--cache-dir', join(s.dir, 'cache'), '--no-background']);
  flipEveryBigBlobResponse(s);
  const out = join(s.dir, 'disk.img');
  const failed = await run('nbdcopy', [srv.info.uri, out], { timeout: 120_000 }).then(() => undefined, (err: { stderr?: string }) => err);
  assert.ok(failed, 'nbdcopy must fail: every fetched chunk is corrupt');
  assert.match(String(failed.stderr), /Input\/output error|error/i);
  const logged = srv.stderr();
  assert.match(logged, /verify: chunk does not match its digest, again after refetching/);
  const line = logged.split('\n').find((l) => l.includes('verify: chunk does not match'))!;
  const rec = JSON.parse(line) as { layer: string; chunk: number; upstream: string };
  assert.ok(rec.layer.includes(s.digest), rec.layer);
  assert.ok(Number.isInteger(rec.chunk));
  assert.ok(rec.upstream.includes(s.proxy.hostPort), rec.upstream);

  // Fetches the failed copy started (read-ahead) may still be in flight through the proxy; a read
  // joining one of them would share its failure. Let them settle, then make the upstream good.
  for (let seen = -1; seen !== s.proxy.log.length;) {
    seen = s.proxy.log.length;
    await new Promise((r) => setTimeout(r, 750));
  }
  s.proxy.clear();
  await run('nbdcopy', [srv.info.uri, out], { timeout: 120_000 });
  const want = createHash('sha256').update((await s.probe.read(0, VSIZE)).bytes).digest('hex');
  assert.equal(createHash('sha256').update(await readFile(out)).digest('hex'), want, 'the served disk is the layer content');
  assert.equal(await srv.stop(), 0);
});

test('the table is fetched once: a later attach on the same cache takes the kept table after checking its digest; a tampered kept table is fetched again', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const s = await setup(t, 'none', true, 6);
  const cacheDir = join(s.dir, 'cache');
  const tableRange = `bytes=${s.table!.offset}-${s.table!.offset + s.table!.length - 1}`;
  const tableGets = (): number => s.proxy.log.filter((l) => l.method === 'GET' && String(l.headers.range) === tableRange).length;
  const attach = async (): Promise<void> => (await openRemoteImage(s.ref, { cacheDir, background: { enable: false }, logStatsOnClose: false })).close();
  await attach();
  assert.equal(tableGets(), 1);
  await attach();
  assert.equal(tableGets(), 1, 'the second attach used the kept table');
  const kept = cachePaths(cacheDir, s.digest.slice(7)).tablePath;
  const bytes = await readFile(kept);
  bytes[bytes.length - 1024 - 1]! ^= 1;
  await writeFile(kept, bytes);
  await attach();
  assert.equal(tableGets(), 2, 'a kept table that does not match the annotation is not used');
  assert.ok(!(await readFile(kept)).equals(bytes), 'and the good table is kept again');
});
