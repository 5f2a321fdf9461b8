import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BackgroundResult } from '../../src/io/cache.ts';
import { eventually, fixture, KiB, makeBlob, MiB } from './cache/fixture.ts';

const U = 256 * KiB;

test('background download fills every unit, verifies sha256, and later reads never touch upstream', async (t) => {
  const f = await fixture(t, { size: 2 * MiB + 5000 });
  const { src } = await f.open();
  await src.read(new Uint8Array(100), 3 * U); // one unit already present: not fetched again
  let reported: BackgroundResult | undefined;
  const dl = src.startBackgroundDownload({ chunk: 2 * U, onDone: (r) => { reported = r; } });
  const result = await dl.done;
  assert.equal(result.ok, true, result.error?.message);
  assert.equal(reported, result);
  assert.equal(result.bytesFetched, 2 * MiB + 5000 - U);
  assert.ok(src.complete);
  const fetched = f.server.requests.map((r) => r.start / U);
  assert.deepEqual(fetched, [3, 0, 2, 4, 6, 8], 'in order, in 2-unit chunks, skipping the present unit');
  assert.equal(f.server.bytesServed, 2 * MiB + 5000);
  await f.server.stop();
  const dst = new Uint8Array(700 * KiB);
  await src.read(dst, 1234);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(1234, 1234 + dst.length));
  // Completeness is persisted: after a restart the blob is still complete and served locally.
  await f.reopen();
  const again = await f.open();
  assert.ok(again.src.complete);
  const all = new Uint8Array(f.body.length);
  assert.equal(await again.src.read(all, 0), f.body.length);
  assert.deepEqual(Buffer.from(all), f.body);
  assert.equal(again.up.requests, 0);
});

test('background download respects the bandwidth limit', async (t) => {
  const f = await fixture(t, { size: 2 * MiB });
  const { src } = await f.open();
  const started = performance.now();
  const result = await src.startBackgroundDownload({ maxBytesPerSec: 4 * MiB }).done;
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.ok, true);
  // One chunk of burst, the rest at 4 MiB/s: at least (2 MiB - 256 KiB) / 4 MiB = 0.44 s.
  assert.ok(seconds >= 0.4, `2 MiB at 4 MiB/s took only ${seconds.toFixed(3)} s`);
});

test('demand reads are served while a download runs, and the download pauses while they wait', async (t) => {
  const f = await fixture(t, { size: 4 * MiB });
  const { src, up } = await f.open();
  const dl = src.startBackgroundDownload({ maxBytesPerSec: 2 * MiB });
  await eventually(() => src.stats.backgroundRequests >= 2, 5000, 'download to start');
  // A far-away demand read is answered long before the download gets there.
  const dst = new Uint8Array(4 * KiB);
  await src.read(dst, 15 * U + 10);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(15 * U + 10, 15 * U + 10 + dst.length));
  assert.equal(dl.finished, false, 'the demand read did not wait for the download');
  // Hold only the demand read's upstream request: while it waits, the download starts no new
  // requests (unpaused, 0.6 s at 2 MiB/s would be about five more).
  let release!: () => void;
  up.gate = new Promise((r) => { release = r; });
  up.gateOffset = 14 * U;
  const waiting = src.read(dst, 14 * U);
  const before = src.stats.backgroundRequests;
  await new Promise((r) => setTimeout(r, 600));
  assert.ok(src.stats.backgroundRequests <= before + 1, `download kept going: ${before} -> ${src.stats.backgroundRequests}`);
  up.gate = undefined;
  release();
  await waiting;
  assert.deepEqual(Buffer.from(dst), f.body.subarray(14 * U, 14 * U + dst.length));
  const result = await dl.done;
  assert.equal(result.ok, true);
  // Every unit came from upstream exactly once.
  const starts = f.server.requests.map((r) => r.start);
  assert.equal(new Set(starts).size, starts.length);
  assert.equal(f.server.bytesServed, 4 * MiB);
});

test('a digest mismatch discards the download, names both digests, and reads keep working from upstream', async (t) => {
  const served = makeBlob(1 * MiB);
  const claimed = makeBlob(16).digest;
  const f = await fixture(t, { size: served.body.length, body: served.body, digest: claimed });
  const { src, up } = await f.open();
  const first = new Uint8Array(4 * KiB);
  await src.read(first, 0);
  // Without a verified download the cache returns exactly what upstream served.
  assert.deepEqual(Buffer.from(first), served.body.subarray(0, first.length));
  const result = await src.startBackgroundDownload().done;
  assert.equal(result.ok, false);
  assert.ok(result.error);
  assert.ok(result.error.message.includes(`expected ${claimed}, got ${served.digest}`), result.error.message);
  assert.match(src.stats.lastError ?? '', /digest mismatch/);
  assert.equal(src.complete, false);
  assert.equal(src.map.presentBytes, 0);
  assert.equal(f.cache.usedBytes, 0);
  const st = await stat(src.files.dataPath);
  assert.equal(st.size, served.body.length);
  assert.ok(st.blocks * 512 < U, `data file still holds ${st.blocks} blocks`);
  const map = await readFile(src.files.mapPath);
  assert.equal(map.readUInt32LE(24), 0, 'not marked complete on disk');
  assert.ok(map.subarray(32).every((b) => b === 0), 'no unit marked present on disk');
  // Reads go to upstream again and return its bytes.
  const requests = up.requests;
  const dst = new Uint8Array(64 * KiB);
  await src.read(dst, 3 * U);
  assert.deepEqual(Buffer.from(dst), served.body.subarray(3 * U, 3 * U + dst.length));
  assert.equal(up.requests, requests + 1);
});

test('close() stops a download cleanly; a new one resumes with only the missing units', async (t) => {
  const f = await fixture(t, { size: 4 * MiB });
  const { src } = await f.open();
  const dl = src.startBackgroundDownload({ maxBytesPerSec: 2 * MiB });
  await eventually(() => f.server.requests.length >= 3, 5000, 'some progress');
  await src.close();
  const result = await dl.done;
  assert.equal(result.stopped, true);
  assert.equal(result.ok, false);
  const servedAtClose = f.server.requests.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(f.server.requests.length, servedAtClose, 'no requests after close');
  await f.reopen();
  const again = await f.open();
  const r2 = await again.src.startBackgroundDownload().done;
  assert.equal(r2.ok, true);
  const starts = f.server.requests.map((r) => r.start);
  assert.equal(new Set(starts).size, starts.length, 'no unit fetched twice across the restart');
  assert.equal(f.server.bytesServed, 4 * MiB);
});

test('background download retries transient upstream faults', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const { src } = await f.open();
  f.server.failNext = 2;
  const result = await src.startBackgroundDownload().done;
  assert.equal(result.ok, true, result.error?.message);
  assert.ok(src.complete);
  const dataFile = await readFile(join(f.dir, 'blobs', 'sha256', `${f.digest.slice(7)}.data`));
  assert.deepEqual(dataFile, f.body);
});

test('background download gives up after its tries and reports the upstream error', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const { src } = await f.open();
  f.server.failNext = 100;
  const result = await src.startBackgroundDownload({ tries: 2 }).done;
  assert.equal(result.ok, false);
  assert.match(result.error?.message ?? '', /HTTP 500/);
  assert.ok(result.error?.message.includes(f.digest));
  assert.equal(src.complete, false);
});
