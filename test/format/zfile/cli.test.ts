import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemorySource } from '../../../src/io/memory.ts';
import { isTar, openTarPayload } from '../../../src/format/tar/reader.ts';
import { ZFileReader } from '../../../src/format/zfile/reader.ts';
import { runDadi, tempDir, vector } from '../../helpers/env.ts';

const raw = readFileSync(vector('input.raw'));

test('dadi zfile compress/decompress round trip through files, zstd 16K', async (t) => {
  const dir = await tempDir(t);
  const z = join(dir, 'x.zfile');
  const back = join(dir, 'x.raw');
  const c = await runDadi(['zfile', 'compress', vector('input.raw'), z, '--algo', 'zstd', '--block-size', '16K']);
  assert.equal(c.code, 0, c.stderr);
  const reader = await ZFileReader.open(new MemorySource(readFileSync(z)));
  assert.deepEqual([reader.info.algo, reader.info.blockSize, reader.info.verify, reader.info.headerFlags], ['zstd', 16384, true, 0x1b]);
  const d = await runDadi(['zfile', 'decompress', z, back, '--verify']);
  assert.equal(d.code, 0, d.stderr);
  assert.ok(readFileSync(back).equals(raw));
});

test('dadi zfile through stdin and stdout, --no-checksum', async () => {
  const c = await runDadi(['zfile', 'compress', '-', '-', '--no-checksum'], { input: raw });
  assert.equal(c.code, 0, c.stderr);
  const reader = await ZFileReader.open(new MemorySource(c.stdout));
  assert.equal(reader.info.verify, false);
  assert.equal(reader.info.headerFlags, 0x13, 'a pipe keeps the streamed header');
  const d = await runDadi(['zfile', 'decompress', '-', '-'], { input: c.stdout });
  assert.equal(d.code, 0, d.stderr);
  assert.ok(d.stdout.equals(raw));
});

test('dadi zfile compress --tar writes the overlaybd tar wrapper; decompress detects it', async (t) => {
  const dir = await tempDir(t);
  const z = join(dir, 'x.tar');
  const c = await runDadi(['zfile', 'compress', vector('input.raw'), z, '--tar']);
  assert.equal(c.code, 0, c.stderr);
  const bytes = readFileSync(z);
  assert.ok(isTar(bytes));
  assert.equal(bytes.subarray(1024, 1040).toString(), 'overlaybd.commit');
  const payload = await openTarPayload(new MemorySource(bytes));
  assert.equal((await ZFileReader.open(payload)).size, raw.length);
  const d = await runDadi(['zfile', 'decompress', z, '-']);
  assert.equal(d.code, 0, d.stderr);
  assert.ok(d.stdout.equals(raw));
  const ref = await runDadi(['zfile', 'decompress', vector('input.lz4.bs4.tar.zfile'), '-']);
  assert.equal(ref.code, 0, ref.stderr);
  assert.ok(ref.stdout.equals(raw));
});

test('dadi zfile fails clearly on corrupt input and bad options', async (t) => {
  const dir = await tempDir(t);
  const bad = join(dir, 'bad.zfile');
  const z = Buffer.from(readFileSync(vector('input.lz4.bs4.zfile')));
  z[100_000] ^= 0xff;
  writeFileSync(bad, z);
  const d = await runDadi(['zfile', 'decompress', bad, join(dir, 'out')]);
  assert.equal(d.code, 1);
  assert.match(d.stderr, /^dadi: .*bad\.zfile: at offset \d+: block \d+: CRC mismatch/);
  const notZ = await runDadi(['zfile', 'decompress', vector('input.raw'), join(dir, 'out')]);
  assert.equal(notZ.code, 1);
  assert.match(notZ.stderr, /not a ZFile/);
  const bs = await runDadi(['zfile', 'compress', vector('input.raw'), join(dir, 'o'), '--block-size', '3K']);
  assert.equal(bs.code, 1);
  assert.match(bs.stderr, /--block-size must be/);
  const algo = await runDadi(['zfile', 'compress', vector('input.raw'), join(dir, 'o'), '--algo', 'gzip']);
  assert.equal(algo.code, 1);
  assert.match(algo.stderr, /--algo must be lz4 or zstd/);
  const pipeTar = await runDadi(['zfile', 'compress', '-', '-', '--tar']);
  assert.equal(pipeTar.code, 1);
  assert.match(pipeTar.stderr, /--tar needs a file/);
  const strict = await runDadi(['zfile', 'decompress', vector('input.lz4.bs4.nochecksum.zfile'), join(dir, 'o'), '--verify']);
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /no per-block checksums/);
});
