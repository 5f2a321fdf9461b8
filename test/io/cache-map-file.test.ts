/**
 * The presence map file on disk: replaced whole (temporary file + rename) when a blob is opened,
 * so a version 1 map becomes version 2 without a window where old bits sit under a new header;
 * leftovers of an interrupted replacement and corrupt headers do not break the cache's start.
 * A map that already says what the open would write is left as it is (no replacement, no syncs
 * on the path of a container's start), and a new blob's map starts empty.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { BlobCache } from '../../src/io/cache.ts';
import { fixture, hexOf, KiB } from './cache/fixture.ts';

const U = 256 * KiB;

test('a version 1 map is upgraded to version 2 on open; its units stay cached and no temporary file is left', async (t) => {
  const f = await fixture(t, { size: 3 * U });
  const { src } = await f.open();
  await src.read(new Uint8Array(4 * KiB), U + 10); // unit 1
  await f.reopen();
  const dir = join(f.dir, 'blobs', 'sha256');
  const mapPath = join(dir, `${hexOf(f.digest)}.map`);
  // Write the same presence as a version 1 map: one bit per unit.
  const v1 = Buffer.alloc(33);
  v1.write('DADICMAP', 0, 'latin1');
  v1.writeUInt32LE(1, 8);
  v1.writeUInt32LE(U, 12);
  v1.writeBigUInt64LE(BigInt(3 * U), 16);
  v1[32] = 0b010;
  await writeFile(mapPath, v1);
  await f.reopen();
  f.server.requests.length = 0;
  const { src: again } = await f.open();
  const dst = new Uint8Array(U);
  await again.read(dst, U);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(U, 2 * U));
  assert.deepEqual(f.server.requests, [], 'unit 1 was read from the cache');
  const stored = await readFile(mapPath);
  assert.equal(stored.readUInt32LE(8), 2, 'the map file is version 2 now');
  assert.equal(stored.readUInt32LE(28), 4096, 'with 4 KiB pages');
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);
});

test('start-up removes the leftover of an interrupted map replacement and survives a map header with an absurd size', async (t) => {
  const f = await fixture(t, { size: 2 * U });
  const { src } = await f.open();
  await src.read(new Uint8Array(4 * KiB), 0);
  await f.cache.close();
  const dir = join(f.dir, 'blobs', 'sha256');
  const leftover = join(dir, `${hexOf(f.digest)}.map.tmp`);
  await writeFile(leftover, 'half a map');
  const bogus = Buffer.alloc(40);
  bogus.write('DADICMAP', 0, 'latin1');
  bogus.writeUInt32LE(2, 8);
  bogus.writeUInt32LE(U, 12);
  bogus.writeBigUInt64LE(2n ** 52n, 16); // a blob of 4 PiB: its bitmap must not be allocated
  bogus.writeUInt32LE(4096, 28);
  await writeFile(join(dir, `${'ab'.repeat(32)}.map`), bogus);
  f.cache = await BlobCache.open({ dir: f.dir, capacityBytes: 1 << 30, refillUnit: U, metricsRegistry: null });
  assert.ok(!(await readdir(dir)).includes(`${hexOf(f.digest)}.map.tmp`), 'the leftover is gone');
  f.server.requests.length = 0;
  const { src: again } = await f.open();
  await again.read(new Uint8Array(4 * KiB), 0);
  assert.deepEqual(f.server.requests, [], 'the blob cached before is still cached');
});

test('reopening a cached blob keeps its map file as it is (same file, same bytes) and its cached units', async (t) => {
  const f = await fixture(t, { size: 3 * U });
  const { src } = await f.open();
  await src.read(new Uint8Array(4 * KiB), U + 10);
  await f.reopen(); // closes the cache: the map is persisted with unit 1's pages
  const mapPath = join(f.dir, 'blobs', 'sha256', `${hexOf(f.digest)}.map`);
  const before = await readFile(mapPath);
  const ino = (await stat(mapPath)).ino;
  const { src: again } = await f.open();
  assert.equal((await stat(mapPath)).ino, ino, 'the map file was not replaced');
  assert.deepEqual(await readFile(mapPath), before);
  f.server.requests.length = 0;
  const dst = new Uint8Array(4 * KiB);
  await again.read(dst, U + 10);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(U + 10, U + 10 + 4 * KiB));
  assert.deepEqual(f.server.requests, [], 'read from the cache');
  await f.reopen(); // a close after reads only: the map still says the same
  assert.equal((await stat(mapPath)).ino, ino);
  assert.deepEqual(await readFile(mapPath), before);
});

test('a new blob gets an empty version 2 map at open, then the fetched pages once persisted', async (t) => {
  const f = await fixture(t, { size: 3 * U });
  const { src } = await f.open();
  const mapPath = join(f.dir, 'blobs', 'sha256', `${hexOf(f.digest)}.map`);
  const empty = await readFile(mapPath);
  assert.equal(empty.toString('latin1', 0, 8), 'DADICMAP');
  assert.equal(empty.readUInt32LE(8), 2);
  assert.ok(empty.subarray(32).every((b) => b === 0), 'no page is claimed present');
  await src.read(new Uint8Array(4 * KiB), 0);
  await src.blob.flush();
  const after = await readFile(mapPath);
  assert.notEqual(after[32], 0, 'the pages of unit 0 are recorded');
  assert.deepEqual((await readdir(join(f.dir, 'blobs', 'sha256'))).filter((n) => n.endsWith('.tmp')), []);
});
