/**
 * The presence map file on disk: replaced whole (temporary file + rename) when a blob is opened,
 * so a version 1 map becomes version 2 without a window where old bits sit under a new header;
 * leftovers of an interrupted replacement and corrupt headers do not break the cache's start.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
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
