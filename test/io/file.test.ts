/** FileSource: the same bytes whether a read runs synchronously or in the thread pool. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { FileSource, SYNC_READ_MAX } from '../../src/io/file.ts';
import { tempDir } from '../helpers/env.ts';

const SIZE = 3 * SYNC_READ_MAX + 1234;

async function fixture(t: import('node:test').TestContext): Promise<{ path: string; bytes: Buffer }> {
  const dir = await tempDir(t);
  const bytes = randomBytes(SIZE);
  const path = join(dir, 'layer.bin');
  await writeFile(path, bytes);
  return { path, bytes };
}

test('random reads match the file in synchronous and async modes, short only at the end', async (t) => {
  const { path, bytes } = await fixture(t);
  const fast = await FileSource.open(path);
  const slow = await FileSource.open(path, { asyncOnly: true });
  t.after(() => Promise.all([fast.close(), slow.close()]));
  assert.equal(fast.size, SIZE);
  assert.equal(fast.synchronous, true);
  assert.equal(slow.synchronous, false);
  await fc.assert(fc.asyncProperty(fc.nat(SIZE + 100), fc.integer({ min: 0, max: 2 * SYNC_READ_MAX + 7 }), async (offset, len) => {
    for (const src of [fast, slow]) {
      const dst = new Uint8Array(len).fill(0xee);
      const n = await src.read(dst, offset);
      const expected = bytes.subarray(Math.min(offset, SIZE), Math.min(offset + len, SIZE));
      assert.equal(n, expected.length);
      assert.deepEqual(Buffer.from(dst.subarray(0, n)), expected);
    }
  }), { numRuns: 200 });
});

test('a slow synchronous read sends small reads to the thread pool until the backoff ends', async (t) => {
  const { path, bytes } = await fixture(t);
  // Every read counts as slow: the first goes synchronous, then the source backs off.
  const src = await FileSource.open(path, { slowReadNs: 0, asyncBackoffMs: 1000 });
  t.after(() => src.close());
  const dst = new Uint8Array(4096);
  assert.equal(await src.read(dst, 4096), 4096);
  assert.deepEqual(Buffer.from(dst), bytes.subarray(4096, 8192));
  assert.equal(src.slowSyncReads, 1);
  assert.equal(src.synchronous, false);
  assert.equal(await src.read(dst, 8192), 4096);
  assert.deepEqual(Buffer.from(dst), bytes.subarray(8192, 12288));
  assert.equal(src.slowSyncReads, 1, 'an async read is not judged');
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal(src.synchronous, true);
});

test('close waits for async reads in flight, then releases the descriptor; later reads reject', async (t) => {
  const { path, bytes } = await fixture(t);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  const src = await FileSource.open(path, { asyncOnly: true });
  const dst = new Uint8Array(SIZE);
  const pending = src.read(dst, 0);
  await src.close();
  assert.equal(await pending, SIZE);
  assert.deepEqual(Buffer.from(dst), bytes);
  assert.equal(fds(), before);
  await assert.rejects(src.read(new Uint8Array(10), 0), /read after close/);
  await assert.rejects(FileSource.open(join(path, 'missing')), /ENOTDIR|ENOENT/);
  t.diagnostic('closed cleanly');
});

test('bad offsets reject instead of reading elsewhere', async (t) => {
  const { path } = await fixture(t);
  const src = await FileSource.open(path);
  t.after(() => src.close());
  await assert.rejects(src.read(new Uint8Array(8), -1), RangeError);
  await assert.rejects(src.read(new Uint8Array(8), 0.5), RangeError);
});
