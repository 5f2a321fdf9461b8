import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tarStream from 'tar-stream';
import { FormatError } from '../../../src/errors.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { isTar, openTarPayload } from '../../../src/format/tar/reader.ts';
import { vector } from '../../helpers/env.ts';

/** A one-member tar written by tar-stream (plain ustar, as Go's archive/tar writes). */
async function ustarOf(payload: Uint8Array, opts: { pax?: boolean } = {}): Promise<Uint8Array> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const done = new Promise<void>((r) => { pack.on('end', () => r()); });
  const header = { name: 'overlaybd.commit', size: payload.length, mode: 0o444, ...(opts.pax ? { pax: { comment: 'x'.repeat(20) } } : {}) };
  pack.entry(header, Buffer.from(payload));
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function payloadOf(bytes: Uint8Array, name = 'blob'): Promise<Buffer> {
  const src = await openTarPayload(new MemorySource(bytes, name));
  const out = Buffer.alloc(src.size);
  assert.equal(await src.read(out, 0), src.size);
  return out;
}

test('the C++ PAX shape: payload at 1536, size from the PAX record (ustar size 0)', async () => {
  const bytes = readFileSync(vector('input.lz4.bs4.tar.zfile'));
  assert.ok(isTar(bytes));
  const want = readFileSync(vector('input.lz4.bs4.zfile'));
  const got = await payloadOf(bytes);
  assert.ok(got.equals(want));
});

test('plain ustar (Go archive/tar shape): payload at 512, size from the header', async () => {
  const payload = Buffer.from('hello overlaybd '.repeat(100));
  const bytes = await ustarOf(payload);
  assert.ok(isTar(bytes));
  assert.ok((await payloadOf(bytes)).equals(payload));
});

test('isTar rejects non-tar data and a bad checksum; accepts a signed-sum checksum', async () => {
  assert.equal(isTar(readFileSync(vector('input.lz4.bs4.zfile')).subarray(0, 512)), false);
  assert.equal(isTar(new Uint8Array(512)), false);
  assert.equal(isTar(new Uint8Array(10)), false);
  const bytes = Buffer.from(await ustarOf(Buffer.from('x')));
  const bad = Buffer.from(bytes);
  bad[0] = bad[0]! ^ 1;
  assert.equal(isTar(bad), false);
  // A high byte in the name makes signed and unsigned sums differ; store the signed one.
  const signed = Buffer.from(bytes);
  signed[90] = 0xf0;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (signed[i]! >= 128 ? signed[i]! - 256 : signed[i]!);
  signed.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  assert.equal(isTar(signed), true);
});

test('a PAX header without a size record: size from the ustar header; oversized PAX data refused', async () => {
  const bytes = Buffer.from(await ustarOf(Buffer.from('abc'), { pax: true }));
  assert.equal(bytes[156], 0x78, 'tar-stream wrote a PAX header');
  assert.equal((await payloadOf(bytes)).toString(), 'abc');
  const big = Buffer.from(bytes);
  big.write('00000001001', 124, 'latin1'); // PAX data of 512 + 1 bytes
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : big[i]!;
  big.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  await assert.rejects(payloadOf(big), /does not fit the one block supported/);
});

test('malformed wrappers fail with a FormatError naming the file and offset', async () => {
  const good = Buffer.from(readFileSync(vector('input.lz4.bs4.tar.zfile')));
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['truncated payload', (b) => b.subarray(0, 100_000), /runs past the end/],
    ['PAX checksum', (b) => { b[10] = 0x41; return b; }, /checksum/],
    ['ustar checksum', (b) => { b[1024 + 5] = 0x41; return b; }, /at offset 1172: .*checksum/],
    ['PAX record', (b) => { b.write('99', 512, 'latin1'); return b; }, /PAX record/],
    ['PAX size', (b) => { b.write('x', 512 + 8, 'latin1'); return b; }, /PAX size/],
    ['ustar magic', (b) => { b.write('xxtar', 1024 + 257, 'latin1'); return b; }, /ustar header/],
    ['short file', (b) => b.subarray(0, 700), /truncated/],
  ];
  for (const [what, mutate, re] of cases) {
    await assert.rejects(payloadOf(mutate(Buffer.from(good)), 'blob.tar'), (e: unknown) => {
      assert.ok(e instanceof FormatError, what);
      assert.match(e.message, /^blob\.tar: at offset \d+: tar: /, what);
      assert.match(e.message, re, what);
      return true;
    });
  }
});
