/**
 * Hostile clients: random and truncated handshakes, random request streams, abrupt disconnects.
 * The server must answer well-formed replies or close that connection, never crash, never leak a
 * connection, and keep serving a well-behaved client throughout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import { RawClient, IHAVEOPT, infoData, metaData } from './raw-client.ts';
import { patternBytes, startServer } from './serve-helpers.ts';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const HALF = SIZE / 2;

/** Collects unhandled rejections during a test: there must be none. */
function watchRejections(t: import('node:test').TestContext): unknown[] {
  const seen: unknown[] = [];
  const onRejection = (err: unknown): void => { seen.push(err); };
  process.on('unhandledRejection', onRejection);
  t.after(() => process.off('unhandledRejection', onRejection));
  return seen;
}

/** A well-behaved client that writes and verifies in the lower half while hostile ones run. */
async function goodClientCheck(good: RawClient, round: number): Promise<void> {
  const data = patternBytes(8192, round + 1);
  const at = (round * 8192) % HALF;
  good.request(1, BigInt(round * 2), at, data.length, 0, data);
  const w = await good.simpleReply();
  assert.equal(w.error, 0);
  good.request(0, BigInt(round * 2 + 1), at, data.length);
  const r = await good.simpleReply(data.length);
  assert.ok(r.data.equals(data), 'good client reads back its write');
}

function option(code: number, data: Uint8Array): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

const arbOption = fc.oneof(
  fc.record({ code: fc.integer({ min: 0, max: 12 }), data: fc.uint8Array({ maxLength: 64 }) }).map(({ code, data }) => option(code, data)),
  fc.constantFrom(
    option(7, infoData('', [0, 1, 2, 3])), option(6, infoData('x', [9])), option(8, Buffer.alloc(0)),
    option(10, metaData('', ['base:allocation'])), option(9, metaData('', [])), option(3, Buffer.alloc(0)),
  ),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
);

const arbRequest = fc.record({
  magic: fc.constantFrom(0x25609513, 0x25609513, 0x25609513, 0x25609513, 0xdeadbeef),
  flags: fc.oneof(fc.constantFrom(0, 1, 2, 4, 8), fc.integer({ min: 0, max: 0xffff })),
  type: fc.integer({ min: 0, max: 9 }),
  offset: fc.oneof(
    fc.integer({ min: HALF / 512, max: SIZE / 512 - 64 }).map((s) => s * 512),
    fc.constantFrom(SIZE, SIZE - 512, 2 ** 53, 2 ** 63),
    fc.integer({ min: HALF, max: SIZE }),
  ),
  length: fc.oneof(fc.constantFrom(0, 512, 4096, 65536, 33 * MiB, 0xffffffff), fc.integer({ min: 0, max: 70000 })),
  payload: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 70000 })),
});
type RawRequest = typeof arbRequest extends fc.Arbitrary<infer R> ? R : never;

function encodeRequest({ magic, flags, type, offset, length, payload }: RawRequest): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(magic, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(0x1234n, 8);
  h.writeBigUInt64BE(BigInt(offset) & 0xffffffffffffffffn, 16);
  h.writeUInt32BE(length, 24);
  // WRITE payloads may be complete, short or absent (-1 = exactly as announced, capped).
  const n = type === 1 ? (payload < 0 ? Math.min(length, 70000) : payload) : 0;
  return Buffer.concat([h, Buffer.alloc(n, 0x5a)]);
}

/** Reads whatever the server sends until it closes or goes quiet; checks reply magics. */
async function drainReplies(c: RawClient, ms: number): Promise<void> {
  await c.closesWithin(ms);
}

test('random handshakes: the server answers or closes, never crashes, never leaks', async (t) => {
  const rejections = watchRejections(t);
  const { path, server } = await startServer(t, new MemoryDisk(SIZE), { handshakeTimeoutMs: 2000 });
  const good = await RawClient.connect(path);
  t.after(() => good.destroy());
  await good.start();
  let round = 0;
  await fc.assert(fc.asyncProperty(
    fc.boolean(), fc.integer({ min: 0, max: 0xffffffff }), fc.array(arbOption, { maxLength: 6 }), fc.boolean(),
    async (sendFlags, clientFlags, options, cut) => {
      const c = await RawClient.connect(path);
      try {
        if (sendFlags) {
          const f = Buffer.alloc(4);
          f.writeUInt32BE(clientFlags % 5 === 0 ? clientFlags : clientFlags & 3);
          c.write(f);
        }
        let bytes = Buffer.concat(options);
        if (cut && bytes.length > 1) bytes = bytes.subarray(0, bytes.length - 1 - (clientFlags % bytes.length));
        c.write(bytes);
        c.socket.end();
        await drainReplies(c, 1000);
      } finally {
        c.destroy();
      }
      await goodClientCheck(good, round++);
    }), { numRuns: 120, interruptAfterTimeLimit: 20_000 });
  good.destroy();
  await server.whenIdle();
  assert.equal(server.connectionCount, 0);
  assert.deepEqual(rejections, []);
});

test('random request streams: malformed requests get errors or a closed connection', async (t) => {
  const rejections = watchRejections(t);
  const disk = new MemoryDisk(SIZE, { delay: (op, offset) => (offset % 3 === 0 && op === 'read' ? 5 : 0) });
  const { path, server } = await startServer(t, disk, { maxInFlightBytes: 256 * 1024 });
  const good = await RawClient.connect(path);
  t.after(() => good.destroy());
  await good.start();
  let round = 1000;
  await fc.assert(fc.asyncProperty(
    fc.record({ structured: fc.boolean(), meta: fc.boolean(), blockSize: fc.boolean() }),
    fc.array(arbRequest, { minLength: 1, maxLength: 12 }),
    fc.constantFrom('end', 'destroy', 'disc', 'cut'),
    async (how, requests, finish) => {
      const c = await RawClient.connect(path);
      try {
        await c.start({ ...how, meta: how.meta && how.structured });
        let bytes = Buffer.concat(requests.map(encodeRequest));
        if (finish === 'cut') bytes = bytes.subarray(0, Math.max(1, bytes.length - 13));
        c.write(bytes);
        // A short WRITE payload may swallow the DISC, so the client always half-closes too.
        if (finish === 'disc') c.request(2, 0n, 0, 0);
        if (finish === 'destroy') c.destroy();
        else {
          c.socket.end();
          assert.equal(await c.closesWithin(5000), true, 'the server closes once the client is done');
        }
      } finally {
        c.destroy();
      }
      await goodClientCheck(good, round++);
    }), { numRuns: 120, interruptAfterTimeLimit: 25_000 });
  good.destroy();
  await server.whenIdle();
  assert.equal(server.connectionCount, 0);
  assert.deepEqual(rejections, []);
});

test('many clients disconnecting mid-request leave no open connections', async (t) => {
  const rejections = watchRejections(t);
  const disk = new MemoryDisk(SIZE, { delay: () => 20 });
  const { path, server } = await startServer(t, disk);
  const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(path)));
  await Promise.all(clients.map((c) => c.start({ structured: true })));
  clients.forEach((c, i) => {
    for (let j = 0; j < 8; j++) c.request(j % 2, BigInt(j), HALF + j * 65536, 65536, 0, j % 2 ? Buffer.alloc(65536, i) : undefined);
    c.request(1, 99n, HALF, 65536, 0, Buffer.alloc(100)); // payload never completed
  });
  await new Promise((r) => setTimeout(r, 10));
  clients.forEach((c) => c.destroy());
  await server.whenIdle();
  assert.equal(server.connectionCount, 0);
  assert.deepEqual(rejections, []);
});
