/**
 * The worker-side I/O paths: compress workers reading batches straight from the input file
 * (ZFileWriter.writeFromFile) and decompress workers writing chunks straight into the output
 * file. Each must give exactly the bytes of the plain in-thread path, at sizes that end off
 * every boundary (block, batch, chunk), and fail clearly when the input runs out or is corrupt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.ts';
import { MemorySink } from '../../../src/io/sink.ts';
import { compressFile, decompressFile } from '../../../src/format/zfile/files.ts';
import { parallelCopyOut } from '../../../src/format/zfile/parallel-decompress.ts';
import { ZFileWriter, type ZFileWriterOptions } from '../../../src/format/zfile/writer.ts';
import { tempDir, vector } from '../../helpers/env.ts';

/** input.raw (random, text, zeros, mixed) repeated with a varying byte, so blocks differ. */
function mixed(size: number): Buffer {
  const raw = readFileSync(vector('input.raw'));
  const parts: Buffer[] = [];
  for (let i = 0, n = 0; n < size; i++, n += raw.length + 1) parts.push(raw, Buffer.from([i & 0xff]));
  return Buffer.concat(parts).subarray(0, size);
}

/** The reference: every byte through write() and compressed in this thread. */
async function viaWrite(data: Uint8Array, opts: ZFileWriterOptions): Promise<Buffer> {
  const mem = new MemorySink();
  const w = await ZFileWriter.create(mem, { ...opts, workers: 0 });
  for (let o = 0; o < data.length; o += 999_983) await w.write(data.subarray(o, o + 999_983));
  await w.close();
  return Buffer.from(mem.bytes());
}

test('writeFromFile gives the bytes write() gives, with odd prefixes, suffixes and file ends', async (t) => {
  const dir = await tempDir(t);
  const data = mixed(13 * (1 << 20) + 4097);
  const path = join(dir, 'in.bin');
  writeFileSync(path, data);
  const fh = await open(path, 'r');
  t.after(() => fh.close());
  const cases: { algo: 'lz4' | 'zstd'; blockSize: number; checksum: boolean; workers?: number; head: number; from: number; to: number }[] = [
    // The whole file, through the shared pool: worker batches, then an in-thread tail.
    { algo: 'lz4', blockSize: 4096, checksum: true, head: 0, from: 0, to: data.length },
    // A written prefix that ends inside a block, a range ending inside a block, then more writes.
    { algo: 'lz4', blockSize: 4096, checksum: true, workers: 2, head: 777, from: 777, to: 9 * (1 << 20) + 5 },
    { algo: 'zstd', blockSize: 65536, checksum: false, workers: 1, head: 5 << 20, from: 5 << 20, to: data.length - 1 },
    // Small ranges stay in-thread; no workers at all also works.
    { algo: 'zstd', blockSize: 8192, checksum: true, workers: 2, head: 100, from: 100, to: 300_001 },
    { algo: 'lz4', blockSize: 16384, checksum: true, workers: 0, head: 0, from: 0, to: data.length },
  ];
  for (const c of cases) {
    const opts: ZFileWriterOptions = { algo: c.algo, blockSize: c.blockSize, checksum: c.checksum, ...(c.workers === undefined ? {} : { workers: c.workers }) };
    const mem = new MemorySink();
    const w = await ZFileWriter.create(mem, opts);
    await w.write(data.subarray(0, c.head));
    await w.writeFromFile(fh.fd, c.from, c.to - c.from);
    assert.equal(w.position, c.to);
    await w.write(data.subarray(c.to));
    await w.close();
    const want = await viaWrite(data, opts);
    assert.ok(Buffer.from(mem.bytes()).equals(want), JSON.stringify(c));
  }
});

test('writeFromFile past the end of the file fails naming the offset, and close does not hang', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'short.bin');
  writeFileSync(path, mixed(10 << 20));
  const fh = await open(path, 'r');
  t.after(() => fh.close());
  for (const workers of [2, 0]) {
    const w = await ZFileWriter.create(new MemorySink(), { algo: 'lz4', blockSize: 4096, checksum: true, workers });
    // As if the file had shrunk by 3 MiB after its size was taken.
    await assert.rejects(w.writeFromFile(fh.fd, 0, 13 << 20).then(() => w.close()),
      /input ended at offset \d+, \d+ bytes short/);
    await w.close().catch(() => undefined);
  }
});

test('a worker\'s failure arrives as one line with its errno code, the worker stack kept aside', async () => {
  for (const workers of [2, 0]) {
    const w = await ZFileWriter.create(new MemorySink(), { algo: 'zstd', blockSize: 4096, checksum: true, workers });
    // No such descriptor: the read fails with EBADF in whichever thread reads.
    const got = await w.writeFromFile(987_654, 0, 9 << 20).then(() => w.close()).then(() => undefined, (e: unknown) => e);
    await w.close().catch(() => undefined);
    assert.ok(got instanceof Error, `workers ${workers}: rejected`);
    assert.equal((got as NodeJS.ErrnoException).code, 'EBADF');
    assert.doesNotMatch(got.message, /\n/);
    // From a worker, the stack is the worker's own: where the read failed there.
    if (workers > 0) assert.match(got.stack ?? '', /compress-worker/);
  }
});

test('compressFile and decompressFile round trip sizes off every block, batch and chunk boundary', async (t) => {
  const dir = await tempDir(t);
  for (const [size, algo] of [[17 * (1 << 20) + 4097, 'lz4'], [(16 << 20) + 1, 'zstd']] as const) {
    const plain = mixed(size);
    const input = join(dir, `in.${size}`);
    writeFileSync(input, plain);
    const z = join(dir, `z.${size}`);
    const out = join(dir, `out.${size}`);
    writeFileSync(out, Buffer.alloc(size + 12345, 0xaa)); // a longer old file must be truncated
    await compressFile(input, z, { algo, blockSize: 4096, checksum: true });
    assert.ok(readFileSync(z).equals(await viaWrite(plain, { algo, blockSize: 4096, checksum: true })), `${algo}: same bytes as in-thread`);
    await decompressFile(z, out, { verify: true });
    assert.ok(readFileSync(out).equals(plain), `${algo} ${size}`);
  }
});

test('parallel decompression into a sink (a pipe) writes the chunks in order', async (t) => {
  const dir = await tempDir(t);
  const plain = mixed(18 * (1 << 20) + 333);
  const input = join(dir, 'in.bin');
  writeFileSync(input, plain);
  const z = join(dir, 'x.zfile');
  await compressFile(input, z, { algo: 'lz4', blockSize: 8192, checksum: true, tar: true });
  const mem = new MemorySink();
  await parallelCopyOut(z, 'x.zfile', plain.length, mem);
  assert.ok(Buffer.from(mem.bytes()).equals(plain));
});

test('a corrupt block fails decompression into a file clearly, whichever worker meets it', async (t) => {
  const dir = await tempDir(t);
  const input = join(dir, 'in.bin');
  writeFileSync(input, mixed(20 << 20));
  const z = join(dir, 'x.zfile');
  await compressFile(input, z, { algo: 'zstd', blockSize: 4096, checksum: true });
  const bytes = readFileSync(z);
  for (const at of [0.1, 0.95]) {
    const bad = Buffer.from(bytes);
    bad[Math.floor(bad.length * at)] ^= 0x01;
    writeFileSync(z, bad);
    await assert.rejects(decompressFile(z, join(dir, 'out'), {}), (e: unknown) => {
      assert.ok(e instanceof FormatError, String(e));
      assert.equal(e.file, z);
      assert.match(e.problem, /^block \d+: CRC mismatch/);
      return true;
    });
  }
});
