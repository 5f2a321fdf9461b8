import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventually, fixture, hexOf, KiB, MiB } from './cache/fixture.ts';

const U = 256 * KiB;

test('one 4 KiB read fetches exactly one refill unit; reading it again fetches nothing', async (t) => {
  const f = await fixture(t, { size: 2 * MiB });
  const { src, up } = await f.open();
  const dst = new Uint8Array(4 * KiB);
  assert.equal(await src.read(dst, 300 * KiB), dst.length);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(300 * KiB, 304 * KiB));
  assert.deepEqual(f.server.requests, [{ start: U, end: 2 * U }]);
  assert.equal(up.bytes, U);
  dst.fill(0);
  assert.equal(await src.read(dst, 300 * KiB), dst.length);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(300 * KiB, 304 * KiB));
  assert.equal(f.server.requests.length, 1);
  const s = f.cache.blobStats(f.digest)!;
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 1);
  assert.equal(s.bytesFromUpstream, U);
  assert.equal(s.bytesFromCache, 4 * KiB);
  assert.equal(s.upstreamRequests, 1);
});

test('the last refill unit is short and reads past the end are short', async (t) => {
  const f = await fixture(t, { size: 3 * U + 1000 });
  const { src } = await f.open();
  const dst = new Uint8Array(8 * KiB);
  assert.equal(await src.read(dst, 3 * U + 500), 500);
  assert.deepEqual(Buffer.from(dst.subarray(0, 500)), f.body.subarray(3 * U + 500));
  assert.deepEqual(f.server.requests, [{ start: 3 * U, end: 3 * U + 1000 }]);
  assert.equal(await src.read(dst, 3 * U + 1000), 0);
});

test('8 concurrent reads of one missing unit share one upstream request', async (t) => {
  const f = await fixture(t, { size: 2 * MiB, server: { delayMs: 20 } });
  const { src, up } = await f.open();
  const offsets = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => 3 * U + i * 30 * KiB);
  const bufs = offsets.map(() => new Uint8Array(4 * KiB));
  await Promise.all(offsets.map((o, i) => src.read(bufs[i]!, o)));
  offsets.forEach((o, i) => assert.deepEqual(Buffer.from(bufs[i]!), f.body.subarray(o, o + 4 * KiB)));
  assert.equal(up.requests, 1);
  assert.deepEqual(f.server.requests, [{ start: 3 * U, end: 4 * U }]);
});

test('a read spanning 5 missing units is one coalesced upstream request; cached units split runs', async (t) => {
  const f = await fixture(t, { size: 4 * MiB });
  const { src } = await f.open();
  const dst = new Uint8Array(4 * U);
  await src.read(dst, U + 100); // units 1..5
  assert.deepEqual(Buffer.from(dst), f.body.subarray(U + 100, 5 * U + 100));
  assert.deepEqual(f.server.requests, [{ start: U, end: 6 * U }]);

  // Units 8 and 11 cached; a read over 7..12 fetches the runs 7, 9..10 and 12 only.
  await src.read(new Uint8Array(1), 8 * U);
  await src.read(new Uint8Array(1), 11 * U);
  f.server.requests.length = 0;
  const wide = new Uint8Array(6 * U);
  await src.read(wide, 7 * U);
  assert.deepEqual(Buffer.from(wide), f.body.subarray(7 * U, 13 * U));
  assert.deepEqual(f.server.requests, [
    { start: 7 * U, end: 8 * U }, { start: 9 * U, end: 11 * U }, { start: 12 * U, end: 13 * U },
  ]);
});

test('coalesced requests are capped by maxCoalesceBytes', async (t) => {
  const f = await fixture(t, { size: 4 * MiB, cache: { sourceDefaults: { maxCoalesceBytes: 2 * U } } });
  const { src } = await f.open();
  const dst = new Uint8Array(5 * U);
  await src.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, 5 * U));
  assert.deepEqual(f.server.requests, [{ start: 0, end: 2 * U }, { start: 2 * U, end: 4 * U }, { start: 4 * U, end: 5 * U }]);
});

test('sequential reads trigger read-ahead: upstream requests run ahead of demand', async (t) => {
  const f = await fixture(t, { size: 4 * MiB });
  const { reader } = await f.open({ readAheadBytes: 4 * U });
  const dst = new Uint8Array(64 * KiB);
  for (let off = 0; off < 3 * 64 * KiB; off += 64 * KiB) {
    await reader.read(dst, off);
    assert.deepEqual(Buffer.from(dst), f.body.subarray(off, off + dst.length));
  }
  // Demand has touched only unit 0, yet upstream is asked for what follows.
  await eventually(() => f.server.requests.some((r) => r.start >= U), 5000, 'read-ahead request');
  assert.ok(f.cache.blobStats(f.digest)!.readAheadRequests >= 1);
  // Keep streaming: read-ahead keeps upstream ahead, so most demand reads become hits.
  for (let off = 0; off < 2 * MiB; off += 64 * KiB) {
    await reader.read(dst, off);
    assert.deepEqual(Buffer.from(dst), f.body.subarray(off, off + dst.length));
  }
  const demandUnits = new Set(Array.from({ length: 8 }, (_, i) => i));
  // The read-ahead issued by the last reads reaches the server a moment later on a loaded machine.
  await eventually(() => f.server.requests.some((r) => !demandUnits.has(r.start / U)), 5000, 'read-ahead went past the last demanded unit');
  assert.ok(f.cache.blobStats(f.digest)!.hits > f.cache.blobStats(f.digest)!.misses, 'read-ahead turned demand into hits');
});

test('random (non-sequential) reads trigger no read-ahead', async (t) => {
  const f = await fixture(t, { size: 4 * MiB });
  const { reader } = await f.open({ readAheadBytes: 4 * U });
  const dst = new Uint8Array(4 * KiB);
  for (const unit of [9, 2, 14, 5, 11, 0, 7]) await reader.read(dst, unit * U + 1000);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(f.server.requests.length, 7);
  assert.equal(f.cache.blobStats(f.digest)!.readAheadRequests, 0);
});

test('restart: cached ranges are read back without upstream, even with the server stopped', async (t) => {
  const f = await fixture(t, { size: 2 * MiB });
  let { src } = await f.open();
  const dst = new Uint8Array(10 * KiB);
  await src.read(dst, 0);
  await src.read(dst, 5 * U + 7);
  assert.equal(f.server.requests.length, 2);
  await f.reopen();
  await f.server.stop();
  const again = await f.open();
  src = again.src;
  dst.fill(0);
  await src.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, dst.length));
  await src.read(dst, 5 * U + 7);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(5 * U + 7, 5 * U + 7 + dst.length));
  assert.equal(again.up.requests, 0);
  assert.equal(f.cache.blobStats(f.digest)!.hits, 2);
});

test('restart: a unit whose data reached the file but not the map is refetched', async (t) => {
  const f = await fixture(t, { size: 2 * MiB });
  const { src } = await f.open();
  await src.read(new Uint8Array(4 * KiB), 0);
  await f.cache.close();
  // Simulate a crash between the data write of unit 2 and the map update: garbage data in place.
  const dataPath = join(f.dir, 'blobs', 'sha256', `${hexOf(f.digest)}.data`);
  const fh = await open(dataPath, 'r+');
  await fh.write(Buffer.alloc(U, 0xee), 0, U, 2 * U);
  await fh.close();
  await f.reopen();
  const { src: src2, up } = await f.open();
  const dst = new Uint8Array(U);
  await src2.read(dst, 2 * U);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(2 * U, 3 * U));
  assert.equal(up.requests, 1);
  await src2.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, U));
  assert.equal(up.requests, 1, 'unit 0 was persisted and is a hit');
});

test('restart: a damaged map file makes the blob start empty instead of trusting it', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const { src } = await f.open();
  await src.read(new Uint8Array(U), 0);
  await f.cache.close();
  const mapPath = join(f.dir, 'blobs', 'sha256', `${hexOf(f.digest)}.map`);
  const bytes = await readFile(mapPath);
  bytes.writeUInt32LE(4096, 12); // a different refill unit: the bits no longer mean the same thing
  await writeFile(mapPath, bytes);
  await f.reopen();
  const { src: src2, up } = await f.open();
  const dst = new Uint8Array(U);
  await src2.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, U));
  assert.equal(up.requests, 1);
});

test('an upstream failure fails that read with the blob and range named, caches nothing, and the next read retries', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const { src, up } = await f.open();
  f.server.failNext = 1;
  const dst = new Uint8Array(4 * KiB);
  await assert.rejects(src.read(dst, U + 5), (err: Error) => {
    assert.match(err.message, /EIO/);
    assert.ok(err.message.includes(f.digest), err.message);
    assert.match(err.message, /bytes 262144-524287/);
    assert.match(err.message, /HTTP 500/);
    return true;
  });
  assert.equal(f.cache.blobStats(f.digest)!.upstreamErrors, 1);
  assert.equal(await src.read(dst, U + 5), dst.length);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(U + 5, U + 5 + dst.length));
  assert.equal(up.requests, 2);
});

test('a short upstream read is a clear error and is not cached', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const { src, up } = await f.open();
  up.shortNext = 100;
  const dst = new Uint8Array(4 * KiB);
  await assert.rejects(src.read(dst, 0), /returned 262044 bytes for bytes 0-262143 \(wanted 262144\); nothing cached/);
  await src.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, dst.length));
  assert.equal(up.requests, 2);
  await src.read(dst, 0);
  assert.equal(up.requests, 2);
});

test('server stopped mid-read: the read rejects, nothing is cached, and it succeeds once the server is back', async (t) => {
  const f = await fixture(t, { size: 2 * MiB, server: { bytesPerSec: 1 * MiB } });
  const { src, up } = await f.open();
  const dst = new Uint8Array(4 * U);
  const pending = src.read(dst, 0);
  await eventually(() => f.server.requests.length === 1, 5000, 'request to arrive');
  await new Promise((r) => setTimeout(r, 100)); // part of the body is on the wire
  await f.server.stop();
  await assert.rejects(pending, (err: Error) => err.message.includes(f.digest) && /upstream read of bytes 0-1048575 failed/.test(err.message));
  await f.server.listen();
  f.server.requests.length = 0;
  dst.fill(0);
  await src.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, dst.length));
  assert.deepEqual(f.server.requests, [{ start: 0, end: 4 * U }], 'all four units fetched again: nothing half-done was kept');
  assert.equal(up.requests, 2);
});

test('stats expose miss latency quantiles and prom-client metrics per blob', async (t) => {
  const f = await fixture(t, { size: 1 * MiB, server: { delayMs: 5 } });
  const { src } = await f.open();
  const dst = new Uint8Array(4 * KiB);
  await src.read(dst, 0);
  await src.read(dst, 0);
  await src.read(dst, 2 * U);
  const s = f.cache.blobStats(f.digest)!;
  assert.ok(s.missLatencyP50 >= 0.005, `p50 ${s.missLatencyP50}`);
  assert.ok(s.missLatencyP99 >= s.missLatencyP50);
  const text = await f.registry.metrics();
  assert.match(text, new RegExp(`dadi_cache_hits_total\\{blob="${f.digest}"\\} 1\\n`));
  assert.match(text, new RegExp(`dadi_cache_misses_total\\{blob="${f.digest}"\\} 2\\n`));
  assert.match(text, new RegExp(`dadi_cache_upstream_bytes_total\\{blob="${f.digest}"\\} ${2 * U}\\n`));
  assert.match(text, new RegExp(`dadi_cache_upstream_requests_total\\{blob="${f.digest}"\\} 2\\n`));
  assert.match(text, new RegExp(`dadi_cache_miss_latency_seconds_count\\{blob="${f.digest}"\\} 2\\n`));
  assert.match(text, new RegExp(`dadi_cache_used_bytes ${2 * U}\\n`));
});

test('opening the same blob twice shares one source; it closes with the last handle', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const a = await f.open();
  const b = await f.open();
  assert.notEqual(a.src, b.src, 'each open gives its own handle');
  assert.equal(a.src.blob, b.src.blob, 'on one shared source');
  assert.ok(b.up.closed, 'the unused second upstream is closed');
  await a.src.read(new Uint8Array(10), 0);
  await a.src.close();
  assert.equal(await b.src.read(new Uint8Array(10), 0), 10);
  await b.src.close();
  assert.ok(a.up.closed);
  await assert.rejects(b.src.read(new Uint8Array(10), 0), /read after close/);
});

test('bad digests and mismatched sizes are refused', async (t) => {
  const f = await fixture(t, { size: 4096 });
  const up = (await f.open()).up;
  await assert.rejects(f.cache.open('sha256:../../etc', 4096, up), /not a sha256 digest/);
  await assert.rejects(f.cache.open(f.digest.replace(/.$/, '0'), 8192, up), /has 4096 bytes, expected 8192/);
});

test('kill -9 without close: units cached before the periodic map flush survive, and nothing else is trusted', async (t) => {
  const f = await fixture(t, { size: 2 * MiB });
  await f.cache.close();
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'cache', 'crash-child.ts'),
    f.dir, f.server.url, f.digest, String(f.body.length), String(U), '5', '1', '4'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('cached')) resolve(); });
    child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
  });
  await new Promise((r) => setTimeout(r, 400)); // longer than the 100 ms flush delay
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(f.server.requests.length, 3);
  await f.reopen();
  const { src, up } = await f.open();
  const dst = new Uint8Array(U);
  for (const u of [5, 1, 4]) {
    await src.read(dst, u * U);
    assert.deepEqual(Buffer.from(dst), f.body.subarray(u * U, (u + 1) * U));
  }
  assert.equal(up.requests, 0, 'the flushed units were served from the cache');
  await src.read(dst, 2 * U);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(2 * U, 3 * U));
  assert.equal(up.requests, 1);
});

test('close() lets reads under way finish, then refuses new ones', async (t) => {
  const f = await fixture(t, { size: 1 * MiB, server: { delayMs: 150 } });
  const { src } = await f.open();
  await src.read(new Uint8Array(1), 0);
  const miss = new Uint8Array(64 * KiB);
  const hit = new Uint8Array(64 * KiB);
  const pending = [src.read(miss, 2 * U), src.read(hit, 1000)];
  const closing = src.close();
  await assert.rejects(src.read(new Uint8Array(1), 0), /read after close/);
  assert.deepEqual(await Promise.all(pending), [miss.length, hit.length]);
  assert.deepEqual(Buffer.from(miss), f.body.subarray(2 * U, 2 * U + miss.length));
  assert.deepEqual(Buffer.from(hit), f.body.subarray(1000, 1000 + hit.length));
  await closing;
});

test('reopening a blob while its last handle is still closing gets a fresh, working source', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  const first = await f.open();
  await first.src.read(new Uint8Array(10), 0);
  const closing = first.src.close();
  const second = await f.open();
  assert.notEqual(second.src, first.src);
  const dst = new Uint8Array(U);
  await second.src.read(dst, 0);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(0, U));
  assert.equal(second.up.requests, 0, 'what the first handle cached is there');
  await closing;
  assert.equal(await second.src.read(dst, 0), U);
});

test('read-ahead keeps a window ahead of a reader that outruns the fetches, and asks for no range twice', async (t) => {
  const f = await fixture(t, { size: 8 * MiB });
  const { reader, up } = await f.open({ readAheadBytes: 4 * U });
  const dst = new Uint8Array(64 * KiB);
  // Sequential reads issued back to back, without waiting: the reader is always ahead of the fetches.
  const reads: Array<Promise<number>> = [];
  for (let off = 0; off < 4 * MiB; off += dst.length) reads.push(reader.read(new Uint8Array(dst.length), off));
  await Promise.all(reads);
  await eventually(() => f.server.requests.some((r) => r.end > 4 * MiB), 5000, 'read-ahead past the last read');
  const asked = up.ranges.map((r) => [r.offset, r.offset + r.length] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < asked.length; i++) assert.ok(asked[i]![0] >= asked[i - 1]![1], `upstream ranges overlap: ${JSON.stringify(asked)}`);
});
