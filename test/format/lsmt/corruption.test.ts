import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { FormatError } from '../../../src/errors.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { openReadOnlyLayer } from '../../../src/format/lsmt/readonly.ts';
import { encodeRecord } from '../../../src/format/lsmt/records.ts';
import { vector } from '../../helpers/env.ts';

const original = await readFile(vector('A.lsmt'));
const SIZE = original.length;
const TRAILER = SIZE - 4096;
const INDEX = 415744; // A.lsmt's index_offset (checked below)
const rec = (i: number): number => INDEX + 16 * i;

function corrupt(edit: (b: Buffer, dv: DataView) => void): Buffer {
  const b = Buffer.from(original);
  edit(b, new DataView(b.buffer, b.byteOffset, b.byteLength));
  return b;
}

async function expectError(bytes: Uint8Array, offset: number, problem: RegExp): Promise<void> {
  await assert.rejects(openReadOnlyLayer(new MemorySource(bytes, 'A-bad.lsmt'), 'A-bad.lsmt'), (e: unknown) => {
    assert.ok(e instanceof FormatError, `not a FormatError: ${String(e)}`);
    assert.equal(e.file, 'A-bad.lsmt');
    assert.equal(e.offset, offset, `offset in: ${e.message}`);
    assert.match(e.problem, problem);
    return true;
  });
}

test('the intact file opens (the corruptions below are the only difference)', async () => {
  assert.equal(new DataView(original.buffer, original.byteOffset).getBigUint64(TRAILER + 32, true), BigInt(INDEX));
  const l = await openReadOnlyLayer(new MemorySource(original, 'A.lsmt'), 'A.lsmt');
  assert.equal(l.index.count, 10);
});

test('header magic flipped', async () => {
  await expectError(corrupt((b) => { b[2] ^= 0xff; }), 0, /header: LSMT magic not found/);
});

test('trailer magic flipped, and a truncated file', async () => {
  await expectError(corrupt((b) => { b[TRAILER + 10] ^= 0x01; }), TRAILER, /trailer: LSMT magic not found/);
  await expectError(original.subarray(0, 300000), 300000 - 4096, /trailer: LSMT magic not found/);
  await expectError(original.subarray(0, 100), 0, /truncated: 100 bytes/);
});

test('trailer flags without the sealed bit', async () => {
  await expectError(corrupt((_b, dv) => { dv.setUint32(TRAILER + 28, 0x02, true); }), TRAILER + 28, /trailer flags 0x2: expected trailer, data and sealed/);
});

test('index_size too big, and an index running past the trailer', async () => {
  await expectError(corrupt((_b, dv) => { dv.setBigUint64(TRAILER + 40, 2_000_000n, true); }), TRAILER + 40, /index_size 2000000 exceeds the limit of 1000000/);
  await expectError(corrupt((_b, dv) => { dv.setBigUint64(TRAILER + 40, 300n, true); }), TRAILER + 32, /index points outside the file/);
});

test('overlapping records', async () => {
  // record 1 is (24, 16): move it to start at sector 4, inside record 0 (0, 8).
  await expectError(corrupt((_b, dv) => encodeRecord(dv, rec(1), 4, 16, 16, 0, 0)), rec(1), /index record 1 overlaps record 0/);
});

test('unsorted records', async () => {
  // record 3 (48, 104) and record 4 (2048, 1) swapped.
  const b = corrupt((buf) => {
    const r3 = Buffer.from(buf.subarray(rec(3), rec(4)));
    buf.copy(buf, rec(3), rec(4), rec(5));
    r3.copy(buf, rec(4));
  });
  await expectError(b, rec(4), /index record 4 is not sorted/);
});

test('a record pointing outside the data area', async () => {
  await expectError(corrupt((_b, dv) => encodeRecord(dv, rec(2), 40, 8, 5000, 0, 0)), rec(2), /index record 2: data \[5000, 5008\) .* outside the data area/);
  await expectError(corrupt((_b, dv) => encodeRecord(dv, rec(0), 0, 8, 2, 0, 0)), rec(0), /index record 0: data \[2, 10\)/);
  await expectError(corrupt((_b, dv) => encodeRecord(dv, rec(2), 40, 8, 900, 1, 0)), rec(2), /zeroed extent moffset 900 outside \[8, 812\]/);
});
