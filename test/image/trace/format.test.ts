import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c } from '../../../src/format/crc32c.ts';
import { decodeTrace, encodeTrace, isTraceFile, TRACE_MAGIC, type TraceRecord } from '../../../src/image/trace/format.ts';

const record = fc.record({
  op: fc.constantFrom<'R' | 'W'>('R', 'W'),
  layer: fc.nat({ max: 0xffffffff }),
  offset: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  length: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
});

test('a trace round-trips through the file format', () => {
  fc.assert(fc.property(fc.array(record, { maxLength: 200 }), (records: TraceRecord[]) => {
    const bytes = encodeTrace(records);
    assert.equal(bytes.length, 24 + 24 * records.length);
    assert.ok(isTraceFile(bytes));
    assert.deepEqual(decodeTrace(bytes), records.map((r) => ({ ...r })));
  }));
});

/**
 * A file laid out by hand as overlaybd's `struct TraceHeader`/`struct TraceFormat` (§7.8), with
 * garbage in the record padding (overlaybd does not zero it): the checksum covers it as stored.
 */
function overlaybdStyle(records: Array<[number, number, bigint, bigint]>): Uint8Array {
  const buf = Buffer.alloc(24 + 24 * records.length, 0xee);
  records.forEach(([op, layer, count, offset], i) => {
    const at = 24 + 24 * i;
    buf[at] = op;
    buf.writeUInt32LE(layer, at + 4);
    buf.writeBigUInt64LE(count, at + 8);
    buf.writeBigUInt64LE(offset, at + 16);
  });
  buf.writeUInt32LE(TRACE_MAGIC, 0);
  buf.writeBigUInt64LE(BigInt(24 * records.length), 8);
  buf.writeUInt32LE(crc32c(buf.subarray(24), 0), 16);
  return buf;
}

test('an overlaybd-written trace (padding not zero) decodes', () => {
  const bytes = overlaybdStyle([[0x52, 0, 4096n, 8192n], [0x52, 2, 65536n, 1n << 33n], [0x57, 1, 512n, 0n]]);
  assert.equal(Buffer.from(bytes).readUInt32LE(0), 3270449184);
  assert.deepEqual(decodeTrace(bytes), [
    { op: 'R', layer: 0, length: 4096, offset: 8192 },
    { op: 'R', layer: 2, length: 65536, offset: 2 ** 33 },
    { op: 'W', layer: 1, length: 512, offset: 0 },
  ]);
});

test('the writer produces the layout overlaybd reads (header fields, record fields, checksum)', () => {
  const bytes = Buffer.from(encodeTrace([{ op: 'R', layer: 3, offset: 1 << 20, length: 4096 }]));
  assert.equal(bytes.readUInt32LE(0), TRACE_MAGIC);
  assert.equal(bytes.readBigUInt64LE(8), 24n);
  assert.equal(bytes.readUInt32LE(16), crc32c(bytes.subarray(24), 0));
  assert.equal(bytes[24], 0x52);
  assert.equal(bytes.readUInt32LE(28), 3);
  assert.equal(bytes.readBigUInt64LE(32), 4096n);
  assert.equal(bytes.readBigUInt64LE(40), 1n << 20n);
});

test('bad trace files are refused naming the problem', () => {
  const good = encodeTrace([{ op: 'R', layer: 0, offset: 0, length: 4096 }]);
  assert.throws(() => decodeTrace(good.subarray(0, 10), 't'), /shorter than its 24-byte header/);
  assert.throws(() => decodeTrace(good.subarray(0, 40), 't'), /data_size 24 does not match/);
  const flipped = Uint8Array.from(good); flipped[30] ^= 1;
  assert.throws(() => decodeTrace(flipped, 't'), /checksum mismatch/);
  const magic = Uint8Array.from(good); magic[0] ^= 1;
  assert.throws(() => decodeTrace(magic, 't'), /not a trace file/);
  assert.ok(!isTraceFile(new TextEncoder().encode('/usr/bin/\n')));
});
