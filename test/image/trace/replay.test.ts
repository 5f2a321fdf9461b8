import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlobCache } from '../../../src/io/cache.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { SourceFilter } from '../../../src/io/filter.ts';
import { planReplay, TraceReplay } from '../../../src/image/trace/replay.ts';
import { TraceRecorder } from '../../../src/image/trace/recorder.ts';
import { TraceTap } from '../../../src/image/trace/tap.ts';
import { decodeTrace, type TraceRecord } from '../../../src/image/trace/format.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { startFaultProxy } from '../../helpers/fault-proxy.ts';
import { startDockerRegistry } from '../../helpers/registry.ts';
import { RegistryClient } from '../../../src/registry/client.ts';
import { sha256Digest } from '../../../src/registry/digest.ts';
import { registryUpstream } from '../../../src/image/chain/upstreams.ts';

const UNIT = 64 << 10;
const SIZE = 16 << 20;
const DIGEST = `sha256:${'ab'.repeat(32)}`;

/** A registry stand-in: every read takes `delayMs` and is logged with who asked (by its size). */
class SlowUpstream extends SourceFilter {
  readonly log: Array<{ offset: number; length: number; startedMs: number }> = [];
  private readonly t0 = performance.now();
  constructor(bytes: Uint8Array, private readonly delayMs: number) { super(new MemorySource(bytes)); }
  override async read(dst: Uint8Array, offset: number): Promise<number> {
    this.log.push({ offset, length: dst.length, startedMs: performance.now() - this.t0 });
    await sleep(this.delayMs);
    return super.read(dst, offset);
  }
}

const R = (layer: number, offset: number, length: number): TraceRecord => ({ op: 'R', layer, offset, length });

test('planReplay merges nearby ranges of a layer up to the request limit, in first-touch order, and skips writes', () => {
  const plan = planReplay([R(0, 0, 4096), R(1, 1 << 20, 4096), R(0, 4096, 4096), R(0, 40960, 4096), { ...R(0, 1 << 24, 4096), op: 'W' }, R(0, 8 << 20, 8192)],
    { gap: 64 << 10, maxRequest: 1 << 20 });
  assert.deepEqual(plan, [{ layer: 0, offset: 0, length: 45056 }, { layer: 1, offset: 1 << 20, length: 4096 }, { layer: 0, offset: 8 << 20, length: 8192 }]);
  const capped = planReplay([R(0, 0, 1 << 20), R(0, 1 << 20, 4096)], { maxRequest: 1 << 20 });
  assert.equal(capped.length, 2, 'a merge past maxRequest starts a new request');
});

async function setup(t: import('node:test').TestContext, delayMs: number) {
  const dir = await tempDir(t, 'dadi-replay-');
  const cache = await BlobCache.open({ dir, capacityBytes: 1 << 30, refillUnit: UNIT, metricsRegistry: null });
  t.after(() => cache.close());
  const bytes = randomBytes(SIZE);
  const up = new SlowUpstream(bytes, delayMs);
  const handle = await cache.open(DIGEST, SIZE, up);
  t.after(() => handle.close());
  const tap = new TraceTap(['layer0']);
  const source = await tap.filter()(handle, { name: 'layer0', blob: undefined, pauseWhileAttaching: [], corruptRefetches: 0 });
  return { bytes, up, handle, tap, source, layers: [{ source, demandIdle: () => handle.blob.waitDemandIdle() }] };
}

test('a replay fetches every traced byte once, demand reads then hit, and a recorder sees the reads', async (t) => {
  const { up, tap, source, layers, bytes } = await setup(t, 2);
  // Overlapping, repeated and adjacent records: the cache must still fetch each byte once.
  const records = [R(0, 0, 100_000), R(0, 50_000, 100_000), R(0, 0, 4096), R(0, 3 << 20, 300_000), R(0, 3 << 20, 300_000), R(0, 9 << 20, 5 << 20)];
  const replay = new TraceReplay('img', planReplay(records), layers, tap, 3);
  await replay.done;
  const sorted = [...up.log].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]!.offset >= sorted[i - 1]!.offset + sorted[i - 1]!.length, 'no byte fetched twice');
  const recorder = new TraceRecorder(tap, () => SIZE);
  const fetchedBefore = up.log.length;
  for (const r of records) {
    const dst = new Uint8Array(r.length);
    await source.read(dst, r.offset);
    assert.deepEqual(Buffer.from(dst), bytes.subarray(r.offset, r.offset + r.length));
  }
  assert.equal(up.log.length, fetchedBefore, 'the traced reads are all served from the cache');
  const s = replay.stats();
  assert.equal(s.demandReads, records.length);
  assert.equal(s.demandHitsPrefetched, records.length);
  // The recorder dedups by 4 KiB block and keeps first-touch order; its file decodes.
  const trace = decodeTrace(recorder.stop());
  assert.deepEqual(trace.map((r) => [r.offset, r.length]), [[0, 151552], [3 << 20, 303104], [9 << 20, 5 << 20]]);
});

test('a demand read issued mid-replay is served before the queued prefetches, and stop() issues no more', async (t) => {
  const delay = 60;
  const { up, tap, source, layers } = await setup(t, delay);
  // 12 separate 64 KiB requests, one at a time: the replay alone takes ~12 upstream round trips.
  const records = Array.from({ length: 12 }, (_, i) => R(0, i * (1 << 20), UNIT));
  const replay = new TraceReplay('img', planReplay(records), layers, tap, 1);
  await sleep(delay * 1.5); // the first prefetch is in flight, 11 are queued
  const t0 = performance.now();
  await source.read(new Uint8Array(4096), 15 << 20); // not traced
  const demandMs = performance.now() - t0;
  assert.ok(demandMs < delay * 2.5, `the demand read took ${demandMs.toFixed(0)} ms: it waited behind prefetches`);
  const demandAt = up.log.findIndex((r) => r.offset === 15 << 20);
  assert.ok(demandAt >= 1 && demandAt <= 2, `the demand fetch was upstream request #${demandAt}, not after the queue`);
  await replay.stop();
  const issued = up.log.length;
  assert.ok(replay.stats().issued < records.length, 'stop() left requests unissued');
  await sleep(delay * 3);
  assert.equal(up.log.length, issued, 'nothing is fetched after stop()');
  assert.equal(replay.stats().running, false);
});

test('through a throttled docker-registry: a demand read mid-replay is answered before the queued prefetch requests', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const delay = 150;
  const registry = await startDockerRegistry(t);
  const proxy = await startFaultProxy(t, registry.url);
  const bytes = randomBytes(SIZE);
  const digest = sha256Digest(bytes);
  const client = new RegistryClient({ insecure: true });
  t.after(() => client.close());
  const repo = { registry: proxy.hostPort, repository: 'trace/blob' };
  await client.blobs.upload(repo, bytes);
  // Every Range request now waits `delay` ms, as on a slow link.
  proxy.inject({ kind: 'delay', ms: delay }, { match: (req) => req.headers.range !== undefined, times: 1000 });
  const dir = await tempDir(t, 'dadi-replay-reg-');
  const cache = await BlobCache.open({ dir, capacityBytes: 1 << 30, refillUnit: UNIT, metricsRegistry: null });
  t.after(() => cache.close());
  const handle = await cache.open(digest, SIZE, await registryUpstream(client, repo, { digest, size: SIZE }).open());
  t.after(() => handle.close());
  const tap = new TraceTap(['blob']);
  const source = await tap.filter()(handle, { name: 'blob', blob: undefined, pauseWhileAttaching: [], corruptRefetches: 0 });
  const records = Array.from({ length: 10 }, (_, i) => R(0, i * (1 << 20), UNIT));
  const ranges = (): string[] => proxy.log.filter((e) => e.headers.range).map((e) => String(e.headers.range));
  // What one demand miss costs through this proxy with nothing else going on.
  let t0 = performance.now();
  await source.read(new Uint8Array(4096), 14 << 20);
  const alone = performance.now() - t0;
  const before = ranges().length;
  const replay = new TraceReplay('img', planReplay(records), [{ source, demandIdle: () => handle.blob.waitDemandIdle() }], tap, 2);
  await sleep(delay / 2); // two prefetches in flight, eight queued
  t0 = performance.now();
  const dst = new Uint8Array(4096);
  await source.read(dst, 15 << 20);
  const demandMs = performance.now() - t0;
  assert.deepEqual(Buffer.from(dst), bytes.subarray(15 << 20, (15 << 20) + 4096));
  const demandAt = ranges().findIndex((r) => r.startsWith(`bytes=${15 << 20}-`)) - before;
  t.diagnostic(`demand read mid-replay ${demandMs.toFixed(0)} ms, alone ${alone.toFixed(0)} ms, ${delay} ms added per request; it was Range request #${demandAt} of the replay's`);
  // Behind the eight queued prefetches (two at a time) it would take at least 4 more delays.
  assert.ok(demandMs < alone + 2 * delay, `the demand read took ${demandMs.toFixed(0)} ms (alone ${alone.toFixed(0)} ms): it waited behind prefetches`);
  assert.ok(demandAt >= 0 && demandAt <= 3, `the demand Range request was #${demandAt}, behind queued prefetches`);
  await replay.done;
  const all = ranges().slice(before);
  assert.equal(new Set(all).size, all.length, 'no range requested twice');
  assert.equal(all.length, records.length + 1, 'one request per merged trace range plus the demand read');
});
