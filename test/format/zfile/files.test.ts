import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.ts';
import { compressFile, decompressFile } from '../../../src/format/zfile/files.ts';
import { tempDir, vector } from '../../helpers/env.ts';

/** 20 MiB: input.raw (random, text, zeros, mixed) repeated with a varying byte, so blocks differ. */
function bigInput(): Buffer {
  const raw = readFileSync(vector('input.raw'));
  const parts: Buffer[] = [];
  let n = 0;
  for (let i = 0; n < 20 << 20; i++) {
    parts.push(raw, Buffer.from([i & 0xff]));
    n += raw.length + 1;
  }
  return Buffer.concat(parts).subarray(0, 20 << 20);
}

test('large files: worker-thread compress and decompress round trip, raw and tar-wrapped', async (t) => {
  const dir = await tempDir(t);
  const input = join(dir, 'in.bin');
  const plain = bigInput();
  writeFileSync(input, plain);
  for (const [algo, tar] of [['lz4', false], ['zstd', true]] as const) {
    const z = join(dir, `x.${algo}`);
    const out = join(dir, `x.${algo}.out`);
    await compressFile(input, z, { algo, blockSize: 4096, checksum: true, tar });
    await decompressFile(z, out, { verify: true });
    assert.ok(readFileSync(out).equals(plain), `${algo} tar=${tar}`);
  }
});

test('large files: a corrupt block fails the parallel decompression naming file, block and offset', async (t) => {
  const dir = await tempDir(t);
  const input = join(dir, 'in.bin');
  writeFileSync(input, bigInput());
  const z = join(dir, 'x.zfile');
  await compressFile(input, z, { algo: 'lz4', blockSize: 8192, checksum: true });
  const bytes = readFileSync(z);
  bytes[Math.floor(bytes.length * 0.6)] ^= 0x10;
  writeFileSync(z, bytes);
  await assert.rejects(decompressFile(z, join(dir, 'out'), {}), (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.equal(e.file, z);
    assert.match(e.problem, /^block \d+: CRC mismatch/);
    assert.ok(e.offset > 512 && e.offset < bytes.length);
    return true;
  });
});
