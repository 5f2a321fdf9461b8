import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BLOCK_CRC_INIT, crc32c } from '../../src/format/crc32c.ts';

const check = new TextEncoder().encode('123456789');

/** Bit-at-a-time raw CRC-32C (reflected 0x82F63B78, no inversions): the reference model. */
function slowCrc(data: Uint8Array, init: number): number {
  let c = init >>> 0;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

test('raw CRC-32C matches the formats.md §3.5 vectors', () => {
  assert.equal(crc32c(check, 0), 0x58e3fa20);
  assert.equal(crc32c(check, BLOCK_CRC_INIT), 0x3c9bd4e0);
  assert.equal(BLOCK_CRC_INIT, 100007);
});

test('raw CRC-32C of empty input is the start register', () => {
  assert.equal(crc32c(new Uint8Array(0), 0), 0);
  assert.equal(crc32c(new Uint8Array(0), 0xdeadbeef), 0xdeadbeef);
});

test('raw CRC-32C equals the bitwise model and chains across splits', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 0xffffffff }), fc.nat(), (data, init, cut) => {
    const want = slowCrc(data, init);
    assert.equal(crc32c(data, init), want);
    const at = data.length === 0 ? 0 : cut % data.length;
    assert.equal(crc32c(data.subarray(at), crc32c(data.subarray(0, at), init)), want);
  }), { numRuns: 300 });
});
