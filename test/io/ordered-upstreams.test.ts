/**
 * OrderedUpstreams with in-memory upstreams that fail, stall or serve wrong bytes on demand:
 * order, fallback, timeouts, health memory, and the Refetchable contract (a refetch goes to the
 * next upstream, never the one that served the rejected copy).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { OrderedUpstreams } from '../../src/io/ordered-upstreams.ts';
import { canRefetch } from '../../src/io/refetch.ts';
import { PLAIN_SOURCE, type ByteSource } from '../../src/io/types.ts';
import { UpstreamHealth } from '../../src/io/upstream-health.ts';

type Mode = 'ok' | 'fail' | 'stall' | 'corrupt';

class Flaky implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  mode: Mode = 'ok';
  reads = 0;
  closed = false;
  constructor(readonly name: string, private readonly data: Uint8Array) {}
  get size(): number { return this.data.length; }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    this.reads++;
    if (this.mode === 'fail') throw new Error(`${this.name} is down`);
    if (this.mode === 'stall') await new Promise((r) => setTimeout(r, 200));
    const n = Math.min(dst.length, this.data.length - offset);
    dst.set(this.data.subarray(offset, offset + n));
    if (this.mode === 'corrupt' || this.mode === 'stall') dst.fill(0xee, 0, n); // a late write must not reach the reader
    return n;
  }
  async close(): Promise<void> { this.closed = true; }
}

function setup(n = 3, timeoutMs = 50) {
  const data = randomBytes(1 << 16);
  const ups = Array.from({ length: n }, (_, i) => new Flaky(`u${i}`, data));
  let now = 0;
  const health = new UpstreamHealth({ coolDownMs: 1000, now: () => now });
  const src = new OrderedUpstreams(ups.map((s) => ({ name: s.name, source: s })), { timeoutMs, health });
  return { data, ups, src, health, advance: (ms: number) => { now += ms; } };
}

async function read(src: ByteSource, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  assert.equal(await src.read(buf, offset), length);
  return buf;
}

test('reads go to the first upstream while it works', async () => {
  const { data, ups, src } = setup();
  assert.deepEqual(await read(src, 100, 4000), Buffer.from(data.subarray(100, 4100)));
  assert.deepEqual(ups.map((u) => u.reads), [1, 0, 0]);
  assert.equal(src.servedBy(100), 'u0');
});

test('an error falls back to the next upstream and the failed one is skipped until its cool-down ends', async () => {
  const { data, ups, src, advance } = setup();
  ups[0]!.mode = 'fail';
  assert.deepEqual(await read(src, 0, 1000), Buffer.from(data.subarray(0, 1000)));
  assert.equal(src.servedBy(0), 'u1');
  await read(src, 1000, 1000);
  assert.equal(ups[0]!.reads, 1, 'a down upstream is not asked again during its cool-down');
  ups[0]!.mode = 'ok';
  advance(1001);
  await read(src, 2000, 1000);
  assert.equal(src.servedBy(2000), 'u0', 'after the cool-down it gets another chance');
});

test('a stalled upstream times out; its late bytes never reach the reader', async () => {
  const { data, ups, src } = setup();
  ups[0]!.mode = 'stall';
  const buf = await read(src, 512, 2048);
  assert.deepEqual(buf, Buffer.from(data.subarray(512, 2560)));
  await new Promise((r) => setTimeout(r, 250)); // the stalled read completes into its scratch buffer
  assert.deepEqual(buf, Buffer.from(data.subarray(512, 2560)));
  assert.equal(src.servedBy(512), 'u1');
});

test('the last upstream (the origin) is always tried, and its error is the reader\'s', async () => {
  const { ups, src } = setup();
  for (const u of ups) u.mode = 'fail';
  await assert.rejects(src.read(new Uint8Array(10), 0), /no upstream could read 10 bytes at 0: u0: u0 is down; u1: u1 is down; u2: u2 is down/);
  ups[2]!.mode = 'ok';
  await read(src, 0, 10);
  assert.equal(src.servedBy(0), 'u2');
});

test('refetch reads from the next upstream, not the one that served the rejected copy, and marks it down', async () => {
  const { data, ups, src, health } = setup();
  assert.ok(canRefetch(src));
  ups[0]!.mode = 'corrupt';
  const buf = Buffer.alloc(4096);
  await src.read(buf, 8192);
  assert.notDeepEqual(buf, Buffer.from(data.subarray(8192, 12288)), 'the corrupt copy came from u0');
  assert.equal(await src.refetch(buf, 8192, 'crc mismatch'), 4096);
  assert.deepEqual(buf, Buffer.from(data.subarray(8192, 12288)));
  assert.equal(src.servedBy(8192), 'u1');
  assert.equal(health.isHealthy('u0'), false);
  assert.match(health.reason('u0')!, /crc mismatch/);
  // A refetch of what u1 served goes to u2 (u0 is down).
  await src.refetch(buf, 8192, 'digest mismatch');
  assert.equal(src.servedBy(8192), 'u2');
  assert.deepEqual(ups.map((u) => u.reads), [1, 1, 1]);
});

test('a short read at the end of the blob is not a failure; sizes must agree; close closes all', async () => {
  const { data, ups, src } = setup();
  const buf = new Uint8Array(100);
  assert.equal(await src.read(buf, data.length - 40), 40);
  assert.equal(src.servedBy(data.length - 40), 'u0');
  await src.close();
  assert.ok(ups.every((u) => u.closed));
  assert.throws(() => new OrderedUpstreams([
    { name: 'a', source: new Flaky('a', new Uint8Array(10)) }, { name: 'b', source: new Flaky('b', new Uint8Array(11)) },
  ]), /a has 10 bytes, b has 11/);
});
