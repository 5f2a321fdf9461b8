/**
 * An NBD server whose disk is still opening (the snapshotter starts nbdfuse while an image's
 * layer indexes are being fetched): it listens at once, holds the clients that connect until the
 * disk is ready and then serves them as usual; when the disk fails to open they are disconnected
 * before any greeting, and closing the server meanwhile lets them go too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import type { Disk } from '../../src/io/types.ts';
import { RawClient } from './raw-client.ts';
import { startServer } from './serve-helpers.ts';

const MiB = 1024 * 1024;

function deferred(): { promise: Promise<Disk>; resolve: (d: Disk) => void; reject: (e: Error) => void } {
  let resolve!: (d: Disk) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<Disk>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

test('a client connecting while the disk opens gets no greeting until it is open, then reads its bytes', async (t) => {
  const d = deferred();
  const { server, path } = await startServer(t, d.promise);
  const c = await RawClient.connect(path);
  t.after(() => c.destroy());
  await assert.rejects(c.read(1, 200), /timed out/, 'nothing is sent while the disk is opening');
  assert.throws(() => server.disk, /still opening/);
  const disk = new MemoryDisk(4 * MiB);
  const bytes = Buffer.alloc(4096, 0x5a);
  await disk.write(bytes, 8192);
  d.resolve(disk);
  await c.start();
  c.request(0, 1n, 8192, 4096); // NBD_CMD_READ
  const reply = await c.read(16 + 4096);
  assert.equal(reply.readUInt32BE(0), 0x67446698, 'simple reply magic');
  assert.equal(reply.readUInt32BE(4), 0, 'no error');
  assert.deepEqual(reply.subarray(16), bytes);
  assert.equal(server.disk, disk);
  // A client arriving after the open is served at once.
  const c2 = await RawClient.connect(path);
  t.after(() => c2.destroy());
  await c2.start();
});

test('clients held while the disk opens are disconnected when it fails to open, or when the server closes', async (t) => {
  const failing = deferred();
  const { path } = await startServer(t, failing.promise);
  const c = await RawClient.connect(path);
  t.after(() => c.destroy());
  failing.reject(new Error('registry unreachable'));
  assert.equal(await c.closesWithin(2000), true);

  const never = deferred();
  const { server, path: path2 } = await startServer(t, never.promise);
  const c2 = await RawClient.connect(path2);
  t.after(() => c2.destroy());
  await new Promise((r) => setTimeout(r, 50)); // accepted and held
  await server.close();
  assert.equal(await c2.closesWithin(2000), true);
});
