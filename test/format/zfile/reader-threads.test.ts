/**
 * ZFileReader's decode threads: large reads are decompressed in parts on worker threads, from and
 * into shared memory. Reads must equal the plain bytes whatever the split, the destination
 * (shared or not) or the edges, and a bad block must fail only the reads that cover it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { MemorySink } from '../../../src/io/sink.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { PLAIN_SOURCE } from '../../../src/io/types.ts';
import { ZFileReader } from '../../../src/format/zfile/reader.ts';
import { ZFileWriter, type ZFileWriterOptions } from '../../../src/format/zfile/writer.ts';

/** Text-like (compressible), random (stored raw by zstd) and zero stretches, 4 KiB-misaligned. */
function plainBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  const random = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16)).update(Buffer.alloc(size));
  const words = Buffer.from('block layer zstd extent sector image ');
  for (let at = 0, kind = 0; at < size; kind = (kind + 1) % 3) {
    const n = Math.min(size - at, 3000 + ((at * 7919) % 20000));
    if (kind === 0) for (let i = 0; i < n; i++) out[at + i] = words[(i + at) % words.length]!;
    else if (kind === 1) out.set(random.subarray(at, at + n), at);
    at += n;
  }
  return out;
}

async function compress(data: Uint8Array, opts: ZFileWriterOptions): Promise<Uint8Array> {
  const mem = new MemorySink();
  const w = await ZFileWriter.create(mem, opts);
  await w.write(data);
  await w.close();
  return mem.bytes();
}

const SIZE = 1_000_000; // not a multiple of the block size: the last block is short
const plain = plainBytes(SIZE);
const files = new Map<string, Uint8Array>();
async function zfile(algo: 'zstd' | 'lz4', checksum: boolean): Promise<Uint8Array> {
  const key = `${algo}/${checksum}`;
  let z = files.get(key);
  if (!z) files.set(key, z = await compress(plain, { algo, blockSize: 4096, checksum, workers: 0 }));
  return z;
}

/** Where block i's stored bytes start, from the jump table. */
async function blockStart(z: Uint8Array, i: number): Promise<number> {
  const { indexOffset, dataOffset } = (await ZFileReader.open(new MemorySource(z, 'z'), { threads: 0 })).info;
  const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
  let p = dataOffset;
  for (let k = 0; k < i; k++) p += dv.getUint32(indexOffset + 4 * k, true);
  return p;
}

function dest(n: number, shared: boolean, pad: number): Uint8Array {
  const buf = shared ? new SharedArrayBuffer(n + 2 * pad) : new ArrayBuffer(n + 2 * pad);
  return new Uint8Array(buf, pad, n);
}

test('threaded reads equal the plain bytes: any offset and length, shared or plain destination, lz4 and zstd', async () => {
  for (const [algo, checksum] of [['zstd', true], ['lz4', true], ['zstd', false]] as const) {
    const z = await zfile(algo, checksum);
    // threadMinBytes of one block sends every run with a whole block to the threads.
    const threaded = await ZFileReader.open(new MemorySource(z, 't.zfile'), { threads: 2, threadMinBytes: 4096 });
    const inline = await ZFileReader.open(new MemorySource(z, 'i.zfile'), { threads: 0 });
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: SIZE + 5000 }), fc.integer({ min: 1, max: 300_000 }), fc.boolean(), fc.integer({ min: 0, max: 7 }),
      async (offset, length, shared, pad) => {
        const want = Math.max(0, Math.min(length, SIZE - offset));
        for (const r of [threaded, inline]) {
          const dst = dest(length, shared, pad);
          const n = await r.read(dst, offset);
          assert.equal(n, want);
          assert.ok(Buffer.from(dst.subarray(0, n)).equals(plain.subarray(offset, offset + n)), `${algo} ${offset}+${length}`);
        }
      }), { numRuns: 60 });
    assert.equal(inline.threadedBlocks, 0);
    if (algo === 'zstd') assert.ok(threaded.threadedBlocks > 1000, 'zstd reads went to the decode threads');
    else assert.equal(threaded.threadedBlocks, 0, 'LZ4 blocks are decoded in place (see decodeRun)');
  }
});

test('many threaded reads in flight at once each get their own bytes', async () => {
  const z = await zfile('zstd', true);
  const r = await ZFileReader.open(new MemorySource(z, 'q.zfile'), { threads: 2, threadMinBytes: 8192 });
  const reads = Array.from({ length: 24 }, (_, i) => {
    const offset = (i * 37_123) % (SIZE - 200_000);
    const dst = dest(150_000 + i * 1000, i % 2 === 0, i % 3);
    return r.read(dst, offset).then((n) => {
      assert.equal(n, dst.length);
      assert.ok(Buffer.from(dst).equals(plain.subarray(offset, offset + n)), `read ${i}`);
    });
  });
  await Promise.all(reads);
  assert.ok(r.threadedBlocks >= 24 * 36);
});

test('a corrupt block in a threaded run fails that read with its block and offset; reads beside it work', async () => {
  for (const algo of ['zstd', 'lz4'] as const) {
    const good = await zfile(algo, true);
    const bad = new Uint8Array(good);
    const block = 100; // well inside a threaded part
    const at = await blockStart(good, block);
    bad[at + 7] ^= 0x20;
    const r = await ZFileReader.open(new MemorySource(bad, 'bad.zfile'), { threads: 2, threadMinBytes: 4096 });
    for (const shared of [true, false]) {
      await assert.rejects(r.read(dest(256 * 1024, shared, 0), 64 * 4096), (e: unknown) => {
        assert.ok(e instanceof FormatError, String(e));
        assert.equal(e.offset, at);
        assert.match(e.message, new RegExp(`^bad\\.zfile: at offset ${at}: block ${block}: CRC mismatch`));
        return true;
      });
    }
    if (algo === 'zstd') assert.ok(r.threadedBlocks >= 2 * 62);
    const before = dest(block * 4096, true, 0);
    await r.read(before, 0);
    assert.ok(Buffer.from(before).equals(plain.subarray(0, block * 4096)));
    const after = dest(100 * 4096, false, 0);
    await r.read(after, (block + 1) * 4096);
    assert.ok(Buffer.from(after).equals(plain.subarray((block + 1) * 4096, (block + 101) * 4096)));
  }
});

test('with CRCs off, a garbled block in a threaded run fails as a decompression error, never wrong bytes', async () => {
  const good = await zfile('zstd', false);
  const bad = new Uint8Array(good);
  const block = 50;
  const at = await blockStart(good, block);
  bad.fill(0xff, at, at + 12); // breaks the zstd frame header
  const r = await ZFileReader.open(new MemorySource(bad, 'nocrc.zfile'), { threads: 2, threadMinBytes: 4096 });
  await assert.rejects(r.read(dest(400 * 1024, true, 0), 0), (e: unknown) => {
    assert.ok(e instanceof FormatError, String(e));
    assert.match(e.message, new RegExp(`block ${block}: zstd decompression failed`));
    return true;
  });
  assert.ok(r.threadedBlocks > 0);
});

test('a block that is bad only on the first fetch is retried and the threaded read succeeds', async () => {
  const good = await zfile('zstd', true);
  const pos = (await blockStart(good, 30)) + 5;
  let hits = 0;
  const src = new MemorySource(good, 'flaky.zfile');
  const flaky = {
    caps: PLAIN_SOURCE, name: 'flaky.zfile', size: good.length,
    async read(dst: Uint8Array, offset: number): Promise<number> {
      const n = await src.read(dst, offset);
      if (offset >= 512 && offset <= pos && pos < offset + n && hits++ === 0) dst[pos - offset] ^= 0xff;
      return n;
    },
    close: () => src.close(),
  };
  const r = await ZFileReader.open(flaky, { threads: 2, threadMinBytes: 4096 });
  const dst = dest(300 * 1024, true, 0);
  await r.read(dst, 0);
  assert.ok(Buffer.from(dst).equals(plain.subarray(0, dst.length)));
  assert.equal(r.threadedBlocks, 2 * 75, 'both attempts were decoded on the threads');
  assert.equal(hits, 2, 'the window was fetched again after the CRC mismatch');
});
