import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import fc from 'fast-check';
import { FormatError } from '../../../src/errors.ts';
import { decodeHeader, encodeHeader, headerFields, NULL_UUID } from '../../../src/format/lsmt/header.ts';
import { decodeRecords, encodeIndex, encodeRecord, INVALID_OFFSET, SegmentArrays } from '../../../src/format/lsmt/records.ts';
import { vector } from '../../helpers/env.ts';

test('header round trip: fields survive, uuids are upper-case, null uuid is the zeros string', () => {
  const f = headerFields({ flags: 0x07, virtualSize: 1 << 30, uuid: '5ca1ab1e-0000-4000-8000-00000000000a', userTag: 'hello' });
  const b = encodeHeader(f);
  assert.equal(b.length, 4096);
  const d = decodeHeader(b, 'mem', 0);
  assert.equal(d.uuid, '5CA1AB1E-0000-4000-8000-00000000000A');
  assert.equal(d.parentUuid, NULL_UUID);
  assert.deepEqual(d, { ...f, uuid: '5CA1AB1E-0000-4000-8000-00000000000A' });
  assert.equal(b[24], 390 & 0xff);
  assert.ok(b.subarray(390).every((x) => x === 0));
});

test('header codec reproduces the A.lsmt header and trailer byte for byte', async () => {
  const file = await readFile(vector('A.lsmt'));
  for (const at of [0, file.length - 4096]) {
    const block = file.subarray(at, at + 4096);
    assert.ok(Buffer.from(encodeHeader(decodeHeader(block, 'A.lsmt', at))).equals(block));
  }
});

test('header codec refuses a too-long user tag and a bad uuid', () => {
  assert.throws(() => encodeHeader(headerFields({ flags: 7, userTag: 'x'.repeat(257) })), /at most 256/);
  assert.doesNotThrow(() => encodeHeader(headerFields({ flags: 7, userTag: 'x'.repeat(256) })));
  assert.throws(() => headerFields({ flags: 7, uuid: 'not-a-uuid' }), /invalid UUID/);
});

test('record round trip (property): every field in range survives; tags forced to 0 unless kept', () => {
  const rec = fc.record({
    offset: fc.integer({ min: 0, max: INVALID_OFFSET - 1 }),
    length: fc.integer({ min: 0, max: 16383 }),
    moffset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    zeroed: fc.integer({ min: 0, max: 1 }),
    tag: fc.integer({ min: 0, max: 255 }),
  });
  fc.assert(fc.property(fc.array(rec, { maxLength: 40 }), (recs) => {
    const idx = new SegmentArrays(1);
    for (const r of recs) idx.push(r.offset, r.length, r.moffset, r.zeroed, r.tag);
    const bytes = encodeIndex(idx.trimmed(), 3);
    assert.equal(bytes.length, (recs.length + 3) * 16);
    const kept = new SegmentArrays(1);
    decodeRecords(bytes, kept, { file: 'm', base: 0, keepTags: true });
    const forced = new SegmentArrays(1);
    decodeRecords(bytes, forced, { file: 'm', base: 0 });
    assert.equal(kept.count, recs.length); // the 3 padding records are dropped
    recs.forEach((r, i) => {
      assert.deepEqual([kept.offset[i], kept.length[i], kept.moffset[i], kept.zeroed[i], kept.tag[i]],
        [r.offset, r.length, r.moffset, r.zeroed, r.tag]);
      assert.equal(forced.tag[i], 0);
    });
  }));
});

test('record layout matches formats.md §2.5 bit positions', () => {
  const b = new Uint8Array(16);
  encodeRecord(new DataView(b.buffer), 0, 40, 8, 144, 1, 3);
  const w0 = new DataView(b.buffer).getBigUint64(0, true);
  const w1 = new DataView(b.buffer).getBigUint64(8, true);
  assert.equal(w0, 40n | (8n << 50n));
  assert.equal(w1, 144n | (1n << 55n) | (3n << 56n));
});

test('a moffset beyond 2^53 is refused with a clear error naming the record', () => {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  encodeRecord(dv, 0, 0, 8, 8, 0, 0);
  dv.setBigUint64(16, 5n | (8n << 50n), true);
  dv.setBigUint64(24, 2n ** 54n, true);
  assert.throws(() => decodeRecords(b, new SegmentArrays(), { file: 'f.lsmt', base: 1000 }), (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.equal(e.file, 'f.lsmt');
    assert.equal(e.offset, 1016);
    assert.match(e.message, /index record 1: moffset 18014398509481984 .*beyond 2\^53/);
    return true;
  });
});
