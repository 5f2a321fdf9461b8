/**
 * FileSource's adaptive backoff: a slow synchronous read (a page-cache miss, or the thread
 * merely preempted) sends reads async for a short while; the backoff doubles only while the
 * reads after it stay slow, and one fast read starts it over.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileSource, MAX_BACKOFF_MS, MIN_BACKOFF_MS } from '../../src/io/file.ts';
import { tempDir } from '../helpers/env.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function open(t: import('node:test').TestContext): Promise<{ src: FileSource; bytes: Buffer }> {
  const dir = await tempDir(t);
  const bytes = randomBytes(64 * 1024);
  const path = join(dir, 'layer.bin');
  await writeFile(path, bytes);
  const src = await FileSource.open(path);
  t.after(() => src.close());
  return { src, bytes };
}

/** Waits until the source reads synchronously again, then reads one block synchronously. */
async function syncRead(src: FileSource, bytes: Buffer, at: number): Promise<void> {
  while (!src.synchronous) await sleep(1);
  const dst = new Uint8Array(4096);
  assert.equal(await src.read(dst, at), 4096);
  assert.deepEqual(Buffer.from(dst), bytes.subarray(at, at + 4096));
}

test('the backoff starts short and doubles while reads stay slow, up to the cap', async (t) => {
  const { src, bytes } = await open(t);
  assert.equal(src.nextBackoffMs, MIN_BACKOFF_MS);
  src.slowReadNs = 0n; // every synchronous read is judged slow
  const seen: number[] = [];
  for (let i = 0; i < 8; i++) {
    seen.push(src.nextBackoffMs);
    while (!src.synchronous) await sleep(1);
    const t0 = performance.now();
    await syncRead(src, bytes, 4096 * i);
    assert.equal(src.slowSyncReads, i + 1);
    while (!src.synchronous) await sleep(1);
    // Only a lower bound: a loaded machine may stretch any wait.
    assert.ok(performance.now() - t0 >= seen[i]!, `stayed async at least ${seen[i]} ms`);
  }
  assert.deepEqual(seen, [5, 10, 20, 40, 80, 160, 200, 200].map((ms) => Math.min(ms, MAX_BACKOFF_MS)));
});

test('one fast synchronous read starts the doubling over', async (t) => {
  const { src, bytes } = await open(t);
  src.slowReadNs = 0n;
  await syncRead(src, bytes, 0);
  await syncRead(src, bytes, 4096);
  assert.equal(src.nextBackoffMs, 4 * MIN_BACKOFF_MS);
  src.slowReadNs = 10n ** 12n; // nothing is slow now
  await syncRead(src, bytes, 8192);
  assert.equal(src.nextBackoffMs, MIN_BACKOFF_MS);
  assert.equal(src.synchronous, true);
  assert.equal(src.slowSyncReads, 2);
});

test('an explicit asyncBackoffMs is a fixed backoff', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'f');
  await writeFile(path, randomBytes(8192));
  const src = await FileSource.open(path, { slowReadNs: 0, asyncBackoffMs: 30 });
  t.after(() => src.close());
  for (let i = 0; i < 3; i++) {
    while (!src.synchronous) await sleep(1);
    const t0 = performance.now();
    await src.read(new Uint8Array(100), 0);
    assert.equal(src.nextBackoffMs, 30);
    while (!src.synchronous) await sleep(1);
    assert.ok(performance.now() - t0 >= 29, 'stayed async for the whole backoff');
  }
});
