import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import { DiskError } from '../../src/errors.ts';
import { RawClient, assembleRead } from './raw-client.ts';
import { patternBytes, startServer } from './serve-helpers.ts';
import type { NbdServerOptions } from '../../src/nbd/server.ts';
import type { Disk } from '../../src/io/types.ts';
import { LayerStack } from '../../src/disk/layer-stack.ts';
import { patternLayer } from '../disk/synthetic.ts';

const MiB = 1024 * 1024;
const READ = 0, WRITE = 1, DISC = 2, FLUSH = 3, TRIM = 4, CACHE = 5, WZ = 6, BS = 7;
const FUA = 1, NO_HOLE = 2, DF = 4, REQ_ONE = 8;
const EPERM = 1, EIO = 5, EINVAL = 22, ENOSPC = 28;

async function open(t: import('node:test').TestContext, disk: Disk, how: Parameters<RawClient['start']>[0] = {}, opts: NbdServerOptions = {}) {
  const { path, server } = await startServer(t, disk, opts);
  const c = await RawClient.connect(path);
  t.after(() => c.destroy());
  await c.start(how);
  return { c, server, path };
}

function errno(chunks: { type: number; data: Buffer }[]): number {
  const e = chunks.find((c) => c.type & 0x8000);
  return e ? e.data.readUInt32BE(0) : 0;
}

test('simple replies: write, read back, flush, FUA reaches the disk', async (t) => {
  const disk = new MemoryDisk(8 * MiB);
  const { c } = await open(t, disk);
  const data = patternBytes(64 * 1024, 7);
  c.request(WRITE, 1n, MiB, data.length, 0, data);
  assert.deepEqual(await c.simpleReply(), { error: 0, handle: 1n, data: Buffer.alloc(0) });
  c.request(READ, 2n, MiB, data.length);
  const r = await c.simpleReply(data.length);
  assert.equal(r.handle, 2n);
  assert.ok(r.data.equals(data));
  const before = disk.flushes;
  c.request(FLUSH, 3n, 0, 0);
  assert.equal((await c.simpleReply()).error, 0);
  c.request(WRITE, 4n, 0, 512, FUA, Buffer.alloc(512, 9));
  assert.equal((await c.simpleReply()).error, 0);
  assert.equal(disk.flushes, before + 2, 'FLUSH and FUA each flush the disk');
  c.request(CACHE, 5n, 0, 2 * MiB);
  assert.equal((await c.simpleReply()).error, 0);
});

test('TRIM and WRITE_ZEROES zero the range; NO_HOLE keeps it allocated', async (t) => {
  const disk = new MemoryDisk(4 * MiB);
  await disk.write(Buffer.alloc(256 * 1024, 0xaa), 0);
  const { c } = await open(t, disk);
  c.request(TRIM, 1n, 0, 64 * 1024);
  c.request(WZ, 2n, 64 * 1024, 64 * 1024);
  c.request(WZ, 3n, 128 * 1024, 64 * 1024, NO_HOLE | FUA);
  for (let i = 0; i < 3; i++) assert.equal((await c.simpleReply()).error, 0);
  const ex = await disk.extents!(0, 256 * 1024);
  assert.deepEqual(ex.map((e) => [e.offset, e.length, e.hole]), [[0, 128 * 1024, true], [128 * 1024, 128 * 1024, false]]);
  c.request(READ, 4n, 0, 256 * 1024);
  const r = await c.simpleReply(256 * 1024);
  assert.ok(r.data.subarray(0, 192 * 1024).every((b) => b === 0));
  assert.ok(r.data.subarray(192 * 1024).every((b) => b === 0xaa));
});

test('structured reads: one data chunk for small reads, hole chunks for zero runs in large ones', async (t) => {
  const disk = new MemoryDisk(8 * MiB);
  const data = patternBytes(128 * 1024, 3);
  await disk.write(data, MiB + 64 * 1024);
  const { c } = await open(t, disk, { structured: true, meta: true });
  c.request(READ, 10n, MiB + 64 * 1024, 4096);
  const small = await c.structuredReply();
  assert.deepEqual(small.map((x) => [x.type, x.flags]), [[1, 1]]);
  assert.ok(small[0]!.data.subarray(8).equals(data.subarray(0, 4096)));

  c.request(READ, 11n, MiB, MiB);
  const big = await c.structuredReply();
  assert.ok(big.every((x) => x.handle === 11n));
  assert.deepEqual(big.map((x) => x.type), [2, 1, 2, 0], 'hole, data, hole, done');
  const expected = Buffer.alloc(MiB);
  data.copy(expected, 64 * 1024);
  assert.ok(assembleRead(big, MiB, MiB).equals(expected));

  c.request(READ, 12n, MiB, MiB, DF);
  const whole = await c.structuredReply();
  assert.equal(whole.filter((x) => x.type === 1 || x.type === 2).length, 1, 'DF: one content chunk');
  assert.ok(assembleRead(whole, MiB, MiB).equals(expected));
});

test('structured reads of a layer stack: data, zeroed and hole runs from one index walk', async (t) => {
  const size = 4 * MiB;
  const S = 2048; // sectors per MiB
  const bottom = patternLayer('bottom', size, [{ offset: S, length: 64, moffset: 8, zeroed: false }, { offset: S + 200, length: 300, moffset: 100, zeroed: false }], 1);
  const top = patternLayer('top', size, [{ offset: S + 32, length: 16, moffset: 0, zeroed: true }, { offset: S + 250, length: 8, moffset: 8, zeroed: false }], 2);
  const stack = await LayerStack.open({ lowers: [bottom.layer, top.layer] });
  t.after(() => stack.close());
  const expected = Buffer.alloc(MiB);
  await stack.read(expected, MiB);
  assert.ok(expected.some((b) => b !== 0));
  const { c } = await open(t, stack, { structured: true, meta: true });
  c.request(READ, 1n, MiB, MiB);
  const chunks = await c.structuredReply();
  assert.ok(assembleRead(chunks, MiB, MiB).equals(expected));
  // data [0,32) | zeroed [32,48) | data [48,64) | hole [64,200) | data [200,500) | hole: the
  // zeroed run (8 KiB) and the holes become hole chunks.
  const content = chunks.filter((x) => x.type === 1 || x.type === 2).map((x) => [x.type, Number(x.data.readBigUInt64BE(0)) - MiB]);
  assert.deepEqual(content, [[1, 0], [2, 32 * 512], [1, 48 * 512], [2, 64 * 512], [1, 200 * 512], [2, 500 * 512]]);
  assert.equal(chunks[chunks.length - 1]!.type, 0);
});

test('BLOCK_STATUS reports base:allocation from the disk extents; REQ_ONE gives one extent', async (t) => {
  const disk = new MemoryDisk(4 * MiB);
  await disk.write(Buffer.alloc(128 * 1024, 1), MiB);
  const { c } = await open(t, disk, { structured: true, meta: true });
  c.request(BS, 1n, 0, 4 * MiB);
  const [chunk] = await c.structuredReply();
  assert.equal(chunk!.type, 5);
  const d = chunk!.data;
  const descriptors = [];
  for (let at = 4; at < d.length; at += 8) descriptors.push([d.readUInt32BE(at), d.readUInt32BE(at + 4)]);
  assert.deepEqual(descriptors, [[MiB, 3], [128 * 1024, 0], [3 * MiB - 128 * 1024, 3]]);
  c.request(BS, 2n, MiB, 2 * MiB, REQ_ONE);
  const [one] = await c.structuredReply();
  assert.equal(one!.data.length, 12);
  assert.deepEqual([one!.data.readUInt32BE(4), one!.data.readUInt32BE(8)], [128 * 1024, 0]);
});

test('a disk without extents reports one allocated extent; BLOCK_STATUS needs a meta context', async (t) => {
  const { c } = await open(t, new MemoryDisk(MiB, { extents: false }), { structured: true, meta: true });
  c.request(BS, 1n, 4096, 8192);
  const [chunk] = await c.structuredReply();
  assert.deepEqual([chunk!.data.readUInt32BE(4), chunk!.data.readUInt32BE(8)], [8192, 0]);
  const { c: c2 } = await open(t, new MemoryDisk(MiB), { structured: true });
  c2.request(BS, 2n, 0, 4096);
  assert.equal(errno(await c2.structuredReply()), EINVAL);
});

test('error replies: alignment, range, read-only, flags, unknown commands', async (t) => {
  const { c } = await open(t, new MemoryDisk(MiB), { structured: true, meta: true });
  const cases: Array<[string, number, number, number, number, number]> = [
    ['misaligned read', READ, 100, 512, 0, EINVAL],
    ['misaligned length', READ, 0, 1000, 0, EINVAL],
    ['read past the end', READ, MiB - 512, 1024, 0, EINVAL],
    ['read over 32 MiB', READ, 0, 33 * MiB, 0, EINVAL],
    ['zero-length read', READ, 0, 0, 0, EINVAL],
    ['trim past the end', TRIM, MiB, 512, 0, ENOSPC],
    ['zero past the end', WZ, MiB - 512, 4096, 0, ENOSPC],
    ['flush with a length', FLUSH, 0, 512, 0, EINVAL],
    ['unknown flag', READ, 0, 512, 1 << 9, EINVAL],
    ['NO_HOLE on a read', READ, 0, 512, NO_HOLE, EINVAL],
    ['unknown command', 42, 0, 512, 0, EINVAL],
    ['block status past the end', BS, 0, MiB + 512, 0, EINVAL],
  ];
  let h = 100n;
  for (const [what, type, offset, length, flags, expected] of cases) {
    c.request(type, ++h, offset, length, flags);
    const chunks = await c.structuredReply();
    assert.equal(chunks[0]!.handle, h, what);
    assert.equal(errno(chunks), expected, what);
    assert.ok(chunks[0]!.data.readUInt16BE(4) > 0, `${what}: the error carries a message`);
  }
  // A refused WRITE's payload is skipped, so the stream stays in step.
  c.request(WRITE, 200n, MiB, 4096, 0, Buffer.alloc(4096, 0x25));
  assert.equal(errno(await c.structuredReply()), ENOSPC);
  c.request(READ, 201n, 0, 512);
  assert.equal((await c.structuredReply())[0]!.type, 1);
});

test('writes to a read-only export fail with EPERM; simple-reply errors carry no payload', async (t) => {
  const { c } = await open(t, new MemoryDisk(MiB, { readOnly: true }));
  c.request(WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 0x67));
  assert.deepEqual(await c.simpleReply(), { error: EPERM, handle: 1n, data: Buffer.alloc(0) });
  c.request(TRIM, 2n, 0, 512);
  assert.equal((await c.simpleReply()).error, EPERM);
  c.request(READ, 3n, 0, 512);
  assert.equal((await c.simpleReply(512)).data.length, 512);
});

test('without block size negotiation unaligned requests are served', async (t) => {
  const disk = new MemoryDisk(MiB);
  const { c } = await open(t, disk, { blockSize: false });
  c.request(WRITE, 1n, 3, 5, 0, Buffer.from('hello'));
  assert.equal((await c.simpleReply()).error, 0);
  c.request(READ, 2n, 1, 9);
  assert.equal((await c.simpleReply(9)).data.toString('latin1'), '\0\0hello\0\0');
});

test('disk failures become EIO for that request only', async (t) => {
  const disk = new MemoryDisk(MiB, {
    fault: (op, offset) => (op === 'read' && offset === 4096 ? new Error('medium error') : op === 'write' && offset === 8192 ? new DiskError('ENOSPC', 'full') : undefined),
  });
  const { c } = await open(t, disk, { structured: true });
  c.request(READ, 1n, 4096, 4096);
  const chunks = await c.structuredReply();
  assert.equal(errno(chunks), EIO);
  assert.match(chunks[0]!.data.toString('utf8', 6), /medium error/);
  c.request(WRITE, 2n, 8192, 512, 0, Buffer.alloc(512));
  assert.equal(errno(await c.structuredReply()), ENOSPC);
  c.request(READ, 3n, 0, 4096);
  assert.equal((await c.structuredReply())[0]!.type, 1);
});

test('requests are pipelined and replies come back out of order', async (t) => {
  const disk = new MemoryDisk(MiB, { delay: (op, offset) => (op === 'read' && offset === 0 ? 300 : 0) });
  const { c } = await open(t, disk);
  c.request(READ, 1n, 0, 4096);
  c.request(READ, 2n, 4096, 4096);
  c.request(WRITE, 3n, 8192, 4096, 0, Buffer.alloc(4096, 1));
  const order = [];
  for (let i = 0; i < 3; i++) {
    const h = await c.read(16);
    const handle = h.readBigUInt64BE(8);
    order.push(handle);
    if (handle !== 3n) await c.read(4096);
  }
  assert.equal(order[2], 1n, 'the slow read finishes last');
});

test('a client that does not read replies is throttled, and every reply is still correct', async (t) => {
  const disk = MemoryDisk.from(patternBytes(4 * MiB, 5));
  const { c, path, server } = await open(t, disk, {}, { maxInFlightBytes: 128 * 1024 });
  const n = 600;
  for (let i = 0; i < n; i++) c.request(READ, BigInt(i), (i * 4096) % (4 * MiB), 4096);
  // Meanwhile another client is served normally.
  const other = await RawClient.connect(path);
  t.after(() => other.destroy());
  await other.start();
  other.request(READ, 1n, 0, 512);
  assert.equal((await other.simpleReply(512)).error, 0);
  const want = patternBytes(4 * MiB, 5);
  const seen = new Set<bigint>();
  for (let i = 0; i < n; i++) {
    const r = await c.simpleReply(4096);
    const off = Number(r.handle) * 4096 % (4 * MiB);
    assert.ok(r.data.equals(want.subarray(off, off + 4096)));
    seen.add(r.handle);
  }
  assert.equal(seen.size, n);
  assert.ok(server.backpressureEvents > 0, 'the connection stopped reading at its in-flight bound');
});

test('DISC: in-flight requests are answered, then the server closes', async (t) => {
  const disk = new MemoryDisk(MiB, { delay: (op) => (op === 'write' ? 100 : 0) });
  const { c, server } = await open(t, disk);
  c.request(WRITE, 1n, 0, 512, 0, Buffer.alloc(512, 3));
  c.request(DISC, 2n, 0, 0);
  assert.equal((await c.simpleReply()).error, 0);
  assert.equal(await c.closesWithin(2000), true);
  await server.whenIdle();
  const check = Buffer.alloc(512);
  await disk.read(check, 0);
  assert.ok(check.every((b) => b === 3));
});

test('bad request magic and oversized writes close only that connection', async (t) => {
  const { c, path, server } = await open(t, new MemoryDisk(MiB));
  const good = await RawClient.connect(path);
  t.after(() => good.destroy());
  await good.start();
  c.write(Buffer.alloc(28, 0x41));
  assert.equal(await c.closesWithin(2000), true);
  const c2 = await RawClient.connect(path);
  t.after(() => c2.destroy());
  await c2.start();
  c2.request(WRITE, 9n, 0, 64 * MiB);
  assert.equal((await c2.simpleReply()).error, EINVAL);
  assert.equal(await c2.closesWithin(2000), true);
  good.request(READ, 1n, 0, 512);
  assert.equal((await good.simpleReply(512)).error, 0);
  assert.equal(server.connectionCount, 1);
});

test('a client vanishing mid-request leaves no connection behind', async (t) => {
  const disk = new MemoryDisk(MiB, { delay: () => 150 });
  const { c, server } = await open(t, disk);
  for (let i = 0; i < 20; i++) c.request(READ, BigInt(i), i * 4096, 4096);
  c.request(WRITE, 99n, 0, 4096, 0, Buffer.alloc(1000)); // payload cut short
  await new Promise((r) => setTimeout(r, 30));
  c.destroy();
  await server.whenIdle();
  assert.equal(server.connectionCount, 0);
});

test('close() drains in-flight requests before closing connections', async (t) => {
  const disk = new MemoryDisk(MiB, { delay: (op) => (op === 'read' ? 200 : 0) });
  const { c, server } = await open(t, disk);
  c.request(READ, 1n, 0, 4096);
  await new Promise((r) => setTimeout(r, 50));
  const closing = server.close();
  const r = await c.simpleReply(4096);
  assert.equal(r.error, 0);
  assert.equal(await c.closesWithin(2000), true);
  await closing;
  assert.equal(server.connectionCount, 0);
});
