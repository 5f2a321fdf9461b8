import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FormatError } from '../../../src/errors.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { PLAIN_SOURCE, type ByteSource } from '../../../src/io/types.ts';
import { crc32c } from '../../../src/format/crc32c.ts';
import { headerDigest } from '../../../src/format/zfile/header.ts';
import { ZFileReader } from '../../../src/format/zfile/reader.ts';
import { vector } from '../../helpers/env.ts';

const NAME = 'input.lz4.bs4.zfile';
const good = readFileSync(vector(NAME));
const raw = readFileSync(vector('input.raw'));
const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const trailerAt = good.length - 512;
const indexOffset = Number(dv(good).getBigUint64(trailerAt + 40, true));
const tableEntry = (b: Uint8Array, i: number): number => dv(b).getUint32(indexOffset + 4 * i, true);
function blockStart(i: number): number {
  let p = 512;
  for (let k = 0; k < i; k++) p += tableEntry(good, k);
  return p;
}

function copy(): Buffer {
  return Buffer.from(good);
}

/** Re-seals the trailer's digest (and index CRC) so only the intended field is wrong. */
function reseal(b: Buffer): Buffer {
  const t = b.subarray(trailerAt);
  const n = Number(dv(t).getBigUint64(48, true));
  dv(t).setUint32(64, crc32c(b.subarray(indexOffset, indexOffset + 4 * n), 0), true);
  dv(t).setUint32(28, headerDigest(t), true);
  return b;
}

async function expectOpenError(bytes: Uint8Array, re: RegExp): Promise<void> {
  await assert.rejects(ZFileReader.open(new MemorySource(bytes, 'bad.zfile')), (e: unknown) => {
    assert.ok(e instanceof FormatError, String(e));
    assert.match(e.message, /^bad\.zfile: at offset \d+: /);
    assert.match(e.message, re);
    return true;
  });
}

async function readAll(r: ZFileReader): Promise<Uint8Array> {
  const out = new Uint8Array(r.size);
  await r.read(out, 0);
  return out;
}

test('corrupt header, trailer or jump table: open fails naming the offset and the problem', async () => {
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['header magic', (b) => { b[3] ^= 1; return b; }, /at offset 0: header: bad ZFile magic/],
    ['header byte under the digest', (b) => { b[300] ^= 1; return b; }, /at offset 28: header: digest mismatch/],
    ['header not a header', (b) => { b[32] = 0x12; dv(b).setUint32(28, headerDigest(b.subarray(0, 512)), true); return b; }, /HEADER flag/],
    ['trailer magic', (b) => { b[trailerAt + 10] ^= 1; return b; }, new RegExp(`at offset ${trailerAt}: trailer: bad ZFile magic`)],
    ['trailer field', (b) => { b[trailerAt + 56] ^= 1; return b; }, new RegExp(`at offset ${trailerAt + 28}: trailer: digest mismatch`)],
    ['trailer not sealed', (b) => { b[trailerAt + 32] &= ~4; return reseal(b); }, /not those of a sealed data trailer/],
    ['jump table byte', (b) => { b[indexOffset + 9] ^= 1; return b; }, new RegExp(`at offset ${indexOffset}: jump table CRC mismatch`)],
    ['jump table entry of 4 with verify', (b) => { dv(b).setUint32(indexOffset + 8, 4, true); return reseal(b); }, new RegExp(`at offset ${indexOffset + 8}: jump table: block 2 has stored length 4`)],
    ['jump table entry past the data', (b) => { dv(b).setUint32(indexOffset + 4, 60_000, true); return reseal(b); }, /jump table: block \d+ (ends at|has stored length)/],
    ['index_size not matching the size', (b) => { dv(b).setBigUint64(trailerAt + 48, 10n, true); return reseal(b); }, /index_size 10 does not match/],
    ['index past the trailer', (b) => { dv(b).setBigUint64(trailerAt + 40, BigInt(trailerAt), true); return reseal(b); }, /does not fit/],
    ['unknown algorithm', (b) => { b[trailerAt + 76] = 0; return reseal(b); }, /unsupported compression algorithm 0/],
    ['block size over 64K', (b) => { dv(b).setUint32(trailerAt + 72, 131072, true); return reseal(b); }, /block size 131072/],
  ];
  for (const [what, mutate, re] of cases) {
    await expectOpenError(mutate(copy()), re).catch((e: Error) => { throw new Error(`${what}: ${e.message}`); });
  }
});

test('truncated files fail clearly at open', async () => {
  for (const cut of [0, 100, 600, 1000, 50_000, good.length - 513, good.length - 1]) {
    await expectOpenError(good.subarray(0, cut), /truncated|bad ZFile magic|does not fit|trailer/);
  }
});

test('a corrupt block or block CRC fails that read, names file, block and offset; other reads work', async () => {
  for (const [what, pos] of [['data', blockStart(5) + 10], ['CRC', blockStart(7) + tableEntry(good, 7) - 2]] as const) {
    const b = copy();
    b[pos] ^= 0x40;
    const block = what === 'data' ? 5 : 7;
    const r = await ZFileReader.open(new MemorySource(b, 'bad.zfile'));
    await assert.rejects(r.read(new Uint8Array(100), block * 4096 + 50), (e: unknown) => {
      assert.ok(e instanceof FormatError);
      assert.equal(e.offset, blockStart(block));
      assert.match(e.message, new RegExp(`^bad\\.zfile: at offset ${blockStart(block)}: block ${block}: CRC mismatch`));
      return true;
    });
    await assert.rejects(r.read(new Uint8Array(200_000), 0), /CRC mismatch/);
    const ok = new Uint8Array(4096);
    await r.read(ok, 20 * 4096);
    assert.ok(Buffer.from(ok).equals(raw.subarray(20 * 4096, 21 * 4096)));
  }
});

test('with CRCs off (verify false), a garbled block still never returns bytes of the wrong length', async () => {
  const b = copy();
  for (let i = 0; i < 40; i++) b[blockStart(3) + i] = 0xff;
  const r = await ZFileReader.open(new MemorySource(b, 'bad.zfile'), { verify: false });
  await assert.rejects(r.read(new Uint8Array(4096), 3 * 4096), /block 3: (lz4 decompression failed|decompressed to)/);
});

test('a transient bad read is retried; a persistent one fails after 3 retries', async () => {
  const pos = blockStart(9) + 3;
  const flaky = (failures: number): ByteSource & { reads: number } => {
    const src = new MemorySource(good, 'flaky.zfile');
    const wrapper = {
      caps: PLAIN_SOURCE, name: 'flaky.zfile', size: good.length, reads: 0,
      async read(dst: Uint8Array, offset: number): Promise<number> {
        const n = await src.read(dst, offset);
        if (offset <= pos && pos < offset + n && offset > 512 && offset < indexOffset) {
          wrapper.reads++;
          if (wrapper.reads <= failures) dst[pos - offset] ^= 0xff;
        }
        return n;
      },
      close: () => src.close(),
    };
    return wrapper;
  };
  const transient = flaky(2);
  const r = await ZFileReader.open(transient);
  const out = new Uint8Array(4096);
  await r.read(out, 9 * 4096);
  assert.ok(Buffer.from(out).equals(raw.subarray(9 * 4096, 10 * 4096)));
  assert.equal(transient.reads, 3);
  const persistent = flaky(Infinity);
  const r2 = await ZFileReader.open(persistent);
  await assert.rejects(r2.read(out, 9 * 4096), /block 9: CRC mismatch/);
  assert.equal(persistent.reads, 4, 'one read and 3 retries');
});

test('old (2021) files: garbage high flag bits, random digests and bytes, bit 4 clear, still read', async () => {
  const b = copy();
  const setOld = (at: number, lowFlags: number): void => {
    dv(b).setUint32(at + 32, 0xa4640b00 | lowFlags, true);
    dv(b).setUint32(at + 36, 0x00007ffe, true);
    dv(b).setUint32(at + 28, 0x9e3779b9, true); // random digest
    for (let i = 96; i < 512; i++) b[at + i] = (i * 37 + 11) & 0xff;
  };
  setOld(0, 0x43); // header: bits 0, 1 and garbage bit 6; no CALC_DIGEST, no HEADER_OVERWRITE
  setOld(trailerAt, 0x46); // trailer: bits 1, 2, garbage bit 6
  dv(b).setUint32(trailerAt + 64, 0x12345678, true); // random index CRC: not checked either
  const r = await ZFileReader.open(new MemorySource(b, 'old.zfile'));
  assert.equal(r.info.digestChecked, false);
  assert.ok(Buffer.from(await readAll(r)).equals(raw));
  // The same garbage with bit 4 set is checked, and fails.
  dv(b).setUint32(trailerAt + 32, 0xa4640b56, true);
  await expectOpenError(b, new RegExp(`at offset ${trailerAt + 28}: trailer: digest mismatch`));
});
