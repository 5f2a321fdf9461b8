import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { MemorySink, type Sink } from '../../../src/io/sink.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { isTar, openTarPayload } from '../../../src/format/tar/reader.ts';
import { paxSizeRecord, TarWrapSink } from '../../../src/format/tar/writer.ts';
import { vector } from '../../helpers/env.ts';

async function wrap(payload: Uint8Array, chunk: number): Promise<Buffer> {
  const out = new MemorySink();
  const tar = new TarWrapSink(out);
  for (let o = 0; o < payload.length; o += chunk) await tar.write(payload.subarray(o, o + chunk));
  assert.equal(tar.position, payload.length);
  await tar.close();
  return Buffer.from(out.bytes());
}

for (const [payloadName, tarName] of [['input.lz4.bs4.zfile', 'input.lz4.bs4.tar.zfile'], ['A.lz4.bs4.zlsmt', 'A.lz4.bs4.tar.zlsmt']]) {
  test(`wrapping ${payloadName} gives the reference ${tarName} byte for byte`, async () => {
    const want = readFileSync(vector(tarName!));
    const got = await wrap(readFileSync(vector(payloadName!)), 65_536);
    assert.equal(got.length, want.length);
    assert.ok(got.equals(want));
  });
}

test('PAX size records count their own digits', () => {
  assert.equal(paxSizeRecord(577866), '15 size=577866\n');
  assert.equal(paxSizeRecord(0), '9 size=0\n');
  assert.equal(paxSizeRecord(12), '11 size=12\n');
  assert.equal(paxSizeRecord(123), '12 size=123\n');
  for (const n of [0, 5, 99, 100, 1e9, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    const r = paxSizeRecord(n);
    assert.equal(Number(r.slice(0, r.indexOf(' '))), r.length);
  }
});

test('wrapped payloads of any size read back through openTarPayload; pwrite lands in the payload', async () => {
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 1, max: 700 }), async (payload, chunk) => {
    const bytes = await wrap(payload, chunk);
    assert.equal(bytes.length % 512, 0);
    assert.ok(isTar(bytes));
    const src = await openTarPayload(new MemorySource(bytes));
    const back = new Uint8Array(src.size);
    await src.read(back, 0);
    assert.deepEqual(back, payload);
  }), { numRuns: 100 });
  const out = new MemorySink();
  const tar = new TarWrapSink(out);
  await tar.write(new Uint8Array(10));
  await tar.pwrite(new Uint8Array([7, 8]), 3);
  await tar.close();
  assert.deepEqual([...out.bytes().subarray(1536, 1546)], [0, 0, 0, 7, 8, 0, 0, 0, 0, 0]);
});

test('before close the output is not a tar (placeholder header); a pipe is refused', async () => {
  const out = new MemorySink();
  const tar = await TarWrapSink.create(out);
  await tar.write(new Uint8Array(100));
  assert.equal(isTar(out.bytes()), false);
  await tar.close();
  assert.equal(isTar(out.bytes()), true);
  const pipe = { seekable: false, position: 0 } as unknown as Sink;
  assert.throws(() => new TarWrapSink(pipe), /seekable/);
});
