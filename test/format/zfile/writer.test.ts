import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { MemorySink, type Sink } from '../../../src/io/sink.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { BLOCK_CRC_INIT, crc32c } from '../../../src/format/crc32c.ts';
import { headerDigest } from '../../../src/format/zfile/header.ts';
import { ZFileReader } from '../../../src/format/zfile/reader.ts';
import { ZFileWriter, type ZFileWriterOptions } from '../../../src/format/zfile/writer.ts';
import { TarWrapSink } from '../../../src/format/tar/writer.ts';
import { openTarPayload } from '../../../src/format/tar/reader.ts';
import { vector } from '../../helpers/env.ts';

/** A memory sink that behaves like a pipe: no positional overwrite. */
function pipeOver(mem: MemorySink): Sink {
  return {
    seekable: false,
    get position() { return mem.position; },
    write: (d) => mem.write(d),
    pwrite: () => Promise.reject(new Error('pipe')),
    sync: () => mem.sync(),
    close: () => mem.close(),
  };
}

async function writeAll(sink: Sink, data: Uint8Array, opts: ZFileWriterOptions, chunk: number): Promise<void> {
  const w = await ZFileWriter.create(sink, opts);
  for (let o = 0; o < data.length; o += chunk) await w.write(data.subarray(o, o + chunk));
  assert.equal(w.position, data.length);
  await w.close();
}

async function compress(data: Uint8Array, opts: ZFileWriterOptions, chunk = 65_536): Promise<Uint8Array> {
  const mem = new MemorySink();
  await writeAll(mem, data, opts, chunk);
  return mem.bytes();
}

async function decompress(z: Uint8Array): Promise<{ bytes: Uint8Array; reader: ZFileReader }> {
  const reader = await ZFileReader.open(new MemorySource(z, 'out.zfile'));
  const bytes = new Uint8Array(reader.size);
  assert.equal(await reader.read(bytes, 0), reader.size);
  return { bytes, reader };
}

const u32 = (b: Uint8Array, o: number): number => new DataView(b.buffer, b.byteOffset).getUint32(o, true);
const u64 = (b: Uint8Array, o: number): number => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(o, true));

/** Checks every stored field against an independent walk of the file (formats.md §3.2–3.6). */
function checkLayout(z: Uint8Array, plain: Uint8Array, opts: ZFileWriterOptions, headerFlags: number): void {
  const header = z.subarray(0, 512);
  const trailer = z.subarray(z.length - 512);
  assert.equal(u32(header, 32), headerFlags);
  assert.equal(u32(trailer, 32), 0x16);
  assert.equal(u32(header, 28), headerDigest(header), 'header digest');
  assert.equal(u32(trailer, 28), headerDigest(trailer), 'trailer digest');
  const blocks = Math.ceil(plain.length / opts.blockSize);
  assert.equal(u64(trailer, 48), blocks);
  assert.equal(u64(trailer, 56), plain.length);
  assert.equal(u32(trailer, 72), opts.blockSize);
  assert.equal(trailer[76], opts.algo === 'lz4' ? 1 : 2);
  assert.equal(trailer[88], opts.checksum ? 1 : 0);
  const indexOffset = u64(trailer, 40);
  assert.equal(indexOffset + 4 * blocks, z.length - 512);
  const table = z.subarray(indexOffset, indexOffset + 4 * blocks);
  assert.equal(u32(trailer, 64), crc32c(table, 0), 'index CRC');
  if (headerFlags === 0x1b) assert.deepEqual(header.subarray(40, 96), trailer.subarray(40, 96));
  let pos = 512;
  for (let i = 0; i < blocks; i++) {
    const len = u32(table, 4 * i);
    if (opts.checksum) {
      assert.equal(u32(z, pos + len - 4), crc32c(z.subarray(pos, pos + len - 4), BLOCK_CRC_INIT), `block ${i} CRC`);
    }
    if (opts.algo === 'zstd') assert.equal(u32(z, pos), 0xfd2fb528, 'a zstd frame per block');
    pos += len;
  }
  assert.equal(pos, indexOffset);
}

test('input.raw compressed by dadi: layout, flags and CRCs as formats.md says; reads back', async () => {
  const raw = readFileSync(vector('input.raw'));
  for (const algo of ['lz4', 'zstd'] as const) {
    for (const blockSize of [4096, 65536]) {
      const opts = { algo, blockSize, checksum: true, workers: 0 };
      const z = await compress(raw, opts);
      checkLayout(z, raw, opts, 0x1b);
      const { bytes, reader } = await decompress(z);
      assert.ok(Buffer.from(bytes).equals(raw));
      assert.equal(reader.info.headerOverwritten, true);
      assert.equal(reader.info.verify, true);
    }
  }
});

test('to a pipe the header stays 0x13 and readers find the index through the trailer', async () => {
  const raw = readFileSync(vector('input.raw'));
  const opts = { algo: 'lz4' as const, blockSize: 8192, checksum: false, workers: 0 };
  const mem = new MemorySink();
  await writeAll(pipeOver(mem), raw, opts, 10_000);
  const z = mem.bytes();
  checkLayout(z, raw, opts, 0x13);
  assert.equal(u64(z, 40), 0, 'streamed header has no index fields');
  const { bytes, reader } = await decompress(z);
  assert.equal(reader.info.headerOverwritten, false);
  assert.ok(Buffer.from(bytes).equals(raw));
});

test('round trip: lz4/zstd × 4K..64K × checksum on/off, any data and chunking', async () => {
  const data = fc.oneof(
    fc.uint8Array({ maxLength: 200_000 }), // incompressible
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 50 }), fc.nat({ max: 300_000 }))
      .map(([pat, n]) => Uint8Array.from({ length: n }, (_, i) => pat[i % pat.length]!)),
    fc.nat({ max: 150_000 }).map((n) => new Uint8Array(n)),
  );
  await fc.assert(fc.asyncProperty(
    data, fc.constantFrom('lz4' as const, 'zstd' as const), fc.constantFrom(4096, 8192, 16384, 32768, 65536),
    fc.boolean(), fc.integer({ min: 1, max: 100_000 }),
    async (plain, algo, blockSize, checksum, chunk) => {
      const opts = { algo, blockSize, checksum, workers: 0 };
      const z = await compress(plain, opts, chunk);
      checkLayout(z, plain, opts, 0x1b);
      const { bytes } = await decompress(z);
      assert.deepEqual(bytes, plain);
    }), { numRuns: 60 });
});

test('worker threads: a multi-MiB input compressed in parallel is written in order', async () => {
  const base = readFileSync(vector('input.raw'));
  const plain = Buffer.concat(Array.from({ length: 9 }, (_, i) => Buffer.concat([base, Buffer.from([i])])));
  for (const workers of [2, undefined]) {
    for (const algo of ['lz4', 'zstd'] as const) {
      const opts = { algo, blockSize: 4096, checksum: true, workers };
      const z = await compress(plain, opts, 1_000_003);
      checkLayout(z, plain, opts, 0x1b);
      assert.ok(Buffer.from((await decompress(z)).bytes).equals(plain));
    }
  }
});

test('empty input gives a valid empty ZFile', async () => {
  const z = await compress(new Uint8Array(0), { algo: 'zstd', blockSize: 4096, checksum: true, workers: 0 });
  assert.equal(z.length, 1024);
  const { reader } = await decompress(z);
  assert.equal(reader.size, 0);
  assert.equal(await reader.read(new Uint8Array(10), 0), 0);
});

test('ZFile inside the tar wrapper: the header is rewritten through the wrapper', async () => {
  const raw = readFileSync(vector('input.raw'));
  const out = new MemorySink();
  await writeAll(new TarWrapSink(out), raw, { algo: 'lz4', blockSize: 4096, checksum: true, workers: 0 }, 65_536);
  const payload = await openTarPayload(new MemorySource(out.bytes(), 'x.tar'));
  const reader = await ZFileReader.open(payload);
  assert.equal(reader.info.headerFlags, 0x1b);
  const back = new Uint8Array(reader.size);
  await reader.read(back, 0);
  assert.ok(Buffer.from(back).equals(raw));
});

test('bad options are refused', async () => {
  const sink: Sink = new MemorySink();
  await assert.rejects(ZFileWriter.create(sink, { algo: 'lz4', blockSize: 2048, checksum: true }), /power of two/);
  await assert.rejects(ZFileWriter.create(sink, { algo: 'lz4', blockSize: 5000, checksum: true }), /power of two/);
  await assert.rejects(ZFileWriter.create(sink, { algo: 'gzip' as 'lz4', blockSize: 4096, checksum: true }), /algorithm/);
});
