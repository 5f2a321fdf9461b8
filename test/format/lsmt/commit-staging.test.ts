import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemorySource } from '../../../src/io/memory.ts';
import { MemorySink, type Sink } from '../../../src/io/sink.ts';
import { readFile, writeFile } from 'node:fs/promises';
import fc from 'fast-check';
import { join } from 'node:path';
import { commitLayer } from '../../../src/format/lsmt/commit.ts';
import { commitToFile } from '../../../src/format/lsmt/commit-file.ts';
import { FileSource } from '../../../src/io/file.ts';
import { tempDir } from '../../helpers/env.ts';
import { HT_SPACE } from '../../../src/format/lsmt/header.ts';
import { SECTOR, type SegmentIndex } from '../../../src/format/lsmt/types.ts';

const BLOCK = 4096;

/**
 * A layer whose data file holds `blocks` 4 KiB blocks written in a shuffled LBA order: extents
 * (mostly one block, some runs, some zeroed) sorted by LBA point all over the source, so the
 * commit gathers them with gap-spanning reads across more than one staging buffer.
 */
function shuffledLayer(blocks: number, seed: number): { index: SegmentIndex; data: Uint8Array } {
  let s = seed;
  const rnd = (): number => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s >>> 8; };
  const data = new Uint8Array(blocks * BLOCK);
  for (let i = 0; i < data.length; i += 4) new DataView(data.buffer).setUint32(i, (i * 2654435761 + seed) >>> 0);
  const perm = Array.from({ length: blocks }, (_, i) => i);
  for (let i = blocks - 1; i > 0; i--) { const j = rnd() % (i + 1); [perm[i], perm[j]] = [perm[j]!, perm[i]!]; }
  const offset: number[] = []; const length: number[] = []; const moffset: number[] = []; const zeroed: number[] = [];
  let lba = 0;
  for (let b = 0; b < blocks;) {
    lba += (rnd() % 3) * 8; // holes between extents
    const run = rnd() % 10 === 0 ? 1 + (rnd() % 4) : 1;
    if (rnd() % 17 === 0) { offset.push(lba); length.push(8); moffset.push(0); zeroed.push(1); lba += 8; }
    // A run of blocks adjacent in the source (as a multi-block write leaves them).
    const n = Math.min(run, blocks - b);
    const first = perm[b]!;
    if (n > 1 && first + n <= blocks) {
      offset.push(lba); length.push(n * 8); moffset.push(first * 8); zeroed.push(0);
      lba += n * 8; b += n;
    } else {
      offset.push(lba); length.push(8); moffset.push(first * 8); zeroed.push(0);
      lba += 8; b += 1;
    }
  }
  const count = offset.length;
  return {
    data,
    index: {
      count,
      offset: Float64Array.from(offset), length: Uint32Array.from(length), moffset: Float64Array.from(moffset),
      zeroed: Uint8Array.from(zeroed), tag: new Uint8Array(count),
    },
  };
}

/** The committed data area as a simple model: live extents' bytes concatenated in LBA order. */
function expectedData(index: SegmentIndex, data: Uint8Array): Buffer {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < index.count; i++) {
    if (index.zeroed[i]) continue;
    const at = index.moffset[i]! * SECTOR;
    parts.push(data.subarray(at, at + index.length[i]! * SECTOR));
  }
  return Buffer.concat(parts);
}

test('a layer larger than one staging buffer, scattered over its source, commits its data in LBA order', async () => {
  // ~80 MiB of (multi-block runs of) blocks: more than two 32 MiB stages.
  const { index, data } = shuffledLayer(17_000, 7);
  const sink = new MemorySink();
  const res = await commitLayer({ index, data: new MemorySource(data), virtualSize: 2 ** 36 }, sink);
  const want = expectedData(index, data);
  assert.ok(want.length > 64 << 20, `the layer must span several stages (${want.length} bytes)`);
  assert.equal(res.dataBytes, want.length);
  const got = Buffer.from(sink.bytes().subarray(HT_SPACE, HT_SPACE + res.dataBytes));
  assert.ok(got.equals(want), 'committed data differs from the extents in LBA order');
});

test('a small layer: stages are sized to it and the data still lands in LBA order', async () => {
  const { index, data } = shuffledLayer(300, 3);
  const sink = new MemorySink();
  const res = await commitLayer({ index, data: new MemorySource(data), virtualSize: 2 ** 30 }, sink);
  assert.ok(Buffer.from(sink.bytes().subarray(HT_SPACE, HT_SPACE + res.dataBytes)).equals(expectedData(index, data)));
});

/** Accepts `okWrites` appends, then fails every write, asynchronously, as a full disk would. */
class FailingSink implements Sink {
  position = 0;
  readonly seekable = true;
  constructor(private okWrites: number) {}
  async write(data: Uint8Array): Promise<void> {
    await new Promise((r) => setImmediate(r));
    if (this.okWrites-- <= 0) throw new Error('sink full');
    this.position += data.length;
  }
  async pwrite(): Promise<void> {}
  async sync(): Promise<void> {}
  async close(): Promise<void> {}
}

test('a write failing while the next stage is gathered rejects the commit with that error', async () => {
  const { index, data } = shuffledLayer(17_000, 11);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => { unhandled.push(e); };
  process.on('unhandledRejection', onUnhandled);
  try {
    // Write 0 is the header, write 1 the first stage: the second stage's write fails.
    await assert.rejects(commitLayer({ index, data: new MemorySource(data), virtualSize: 2 ** 36 }, new FailingSink(2)), /sink full/);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a truncated source is named with the offset where its data ends', async () => {
  const { index, data } = shuffledLayer(2000, 5);
  const short = data.subarray(0, data.length - BLOCK);
  await assert.rejects(commitLayer({ index, data: new MemorySource(short, 'w.data'), virtualSize: 2 ** 36 }, new MemorySink()),
    (e: Error) => e.name === 'FormatError' && /w\.data/.test(e.message) && /truncated/.test(e.message));
});

test('a commit to a file, synced in the background as it grows, holds the same bytes as one to memory', async (t) => {
  // ~40 MiB: the file sink starts background fsyncs every 16 MiB while later stages are written.
  const { index, data } = shuffledLayer(9_000, 13);
  const src = { index, data: new MemorySource(data), virtualSize: 2 ** 36 };
  const mem = new MemorySink();
  const want = await commitLayer(src, mem, { message: 'same bytes' });
  const out = join(await tempDir(t), 'c.lsmt');
  const got = await commitToFile(src, out, { message: 'same bytes' });
  assert.deepEqual(got, want);
  assert.ok(want.dataBytes > 32 << 20);
  assert.ok((await readFile(out)).equals(Buffer.from(mem.bytes())), 'the file differs from the commit to memory');
});

test('property: sync (file, piece by piece), async (gap-spanning) and mixed gathering give the model bytes at any stage size', async (t) => {
  const dir = await tempDir(t);
  let n = 0;
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 2 ** 30 }), fc.integer({ min: 512, max: 300_000 }), fc.boolean(),
    async (blocks, seed, stageBytes, everyReadSlow) => {
      const { index, data } = shuffledLayer(blocks, seed);
      const path = join(dir, `src${n++}`);
      await writeFile(path, data);
      const file = await FileSource.open(path);
      let syncReads = 0;
      let asyncReads = 0;
      const readSync = file.readSync.bind(file);
      const read = file.read.bind(file);
      file.readSync = (...args) => { syncReads++; return readSync(...args); };
      file.read = (...args) => { asyncReads++; return read(...args); };
      // Every read taken for a page-cache miss: each stage's first read is sync, the rest async.
      const slowReadMs = everyReadSlow ? -1 : 1e9;
      try {
        const viaFile = new MemorySink();
        const viaMemory = new MemorySink();
        const res = await commitLayer({ index, data: file, virtualSize: 2 ** 36 }, viaFile, {}, { stageBytes, slowReadMs });
        await commitLayer({ index, data: new MemorySource(data), virtualSize: 2 ** 36 }, viaMemory, {}, { stageBytes });
        assert.ok(Buffer.from(viaFile.bytes().subarray(HT_SPACE, HT_SPACE + res.dataBytes)).equals(expectedData(index, data)));
        assert.ok(Buffer.from(viaFile.bytes()).equals(Buffer.from(viaMemory.bytes())));
        assert.ok(syncReads > 0);
        if (!everyReadSlow) assert.equal(asyncReads, 0, 'a fast file is gathered with synchronous reads only');
      } finally {
        await file.close();
      }
    }), { numRuns: 60 });
});

test('sync gathering: a truncated source file is named with the offset where its data ends', async (t) => {
  const { index, data } = shuffledLayer(500, 9);
  const path = join(await tempDir(t), 'w.data');
  await writeFile(path, data.subarray(0, data.length - BLOCK));
  const file = await FileSource.open(path);
  assert.equal(file.size, data.length - BLOCK);
  try {
    await assert.rejects(commitLayer({ index, data: file, virtualSize: 2 ** 36 }, new MemorySink()),
      (e: Error) => e.name === 'FormatError' && /w\.data/.test(e.message) && /truncated/.test(e.message));
  } finally {
    await file.close();
  }
});

test('FileSource reads the same bytes, async and sync, short only at its end', async (t) => {
  const path = join(await tempDir(t), 'f');
  const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7) & 255);
  await writeFile(path, bytes);
  const f = await FileSource.open(path);
  try {
    const a = new Uint8Array(3000);
    assert.equal(await f.read(a, 8000), 2000);
    assert.ok(Buffer.from(a.subarray(0, 2000)).equals(Buffer.from(bytes.subarray(8000))));
    const b = new Uint8Array(5000);
    assert.equal(f.readSync(b, 1000, 4000, 500), 4000);
    assert.ok(Buffer.from(b.subarray(1000)).equals(Buffer.from(bytes.subarray(500, 4500))));
    assert.equal(f.readSync(b, 0, 100, 10_000), 0);
    assert.equal(await f.read(b, 20_000), 0);
  } finally {
    await f.close();
  }
  await f.close(); // a second close is harmless
});
