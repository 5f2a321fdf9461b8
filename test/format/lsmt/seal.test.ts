import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileSource } from '../../../src/io/file.ts';
import { lookupIndex } from '../../../src/format/lsmt/read.ts';
import { openReadOnlyLayer } from '../../../src/format/lsmt/readonly.ts';
import { sealLayer } from '../../../src/format/lsmt/seal.ts';
import { tempDir, vector } from '../../helpers/env.ts';
import { logicalSha256, manifestFile } from '../../helpers/lsmt.ts';

test('sealing a copy of A.rw gives A.sealed except the uninitialised index padding', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'a.data');
  const index = join(dir, 'a.index');
  await copyFile(vector('A.rw.data'), data);
  await copyFile(vector('A.rw.index'), index);
  const res = await sealLayer(data, index);
  assert.equal(res.records, 12);
  assert.equal(res.indexOffset, 428032);

  const mine = await readFile(data);
  const ref = await readFile(vector('A.sealed'));
  assert.equal(mine.length, ref.length);
  // Upstream leaves the padding records (12..31) uninitialised; we write invalid records there.
  const padFrom = res.indexOffset + 12 * 16;
  const padTo = res.indexOffset + 512;
  assert.ok(mine.subarray(0, padFrom).equals(ref.subarray(0, padFrom)), 'data and live records differ');
  assert.ok(mine.subarray(padTo).equals(ref.subarray(padTo)), 'trailer differs');

  const layer = await openReadOnlyLayer(await FileSource.open(data), data);
  try {
    assert.equal(layer.kind, 'sealed');
    const got = await logicalSha256((s, n, v) => lookupIndex(layer.index, s, n, v), layer.data, layer.virtualSize);
    assert.equal(got, manifestFile('A.sealed').logical!.sha256);
  } finally {
    await layer.close();
  }
  await assert.rejects(sealLayer(data, index), /already sealed/);
});

test('a trim record whose moffset lies past the data end (after a failed append) still seals into a valid layer', async (t) => {
  const { appendFile } = await import('node:fs/promises');
  const { encodeRecord } = await import('../../../src/format/lsmt/records.ts');
  const { createWritableLayer } = await import('../../../src/format/lsmt/writable.ts');
  const dir = await tempDir(t);
  const data = join(dir, 'd');
  const index = join(dir, 'i');
  const layer = await createWritableLayer(data, index, { virtualSize: 1 << 20 });
  await layer.write(new Uint8Array(4096).fill(5), 0);
  await layer.close();
  const rec = new Uint8Array(16);
  encodeRecord(new DataView(rec.buffer), 0, 100, 8, 999_999, 1, 0);
  await appendFile(index, rec);
  await sealLayer(data, index);
  const sealed = await openReadOnlyLayer(await FileSource.open(data), data);
  try {
    assert.equal(sealed.index.count, 2);
    assert.equal(sealed.index.zeroed[1], 1);
    assert.ok(sealed.index.moffset[1]! <= (sealed.trailer!.indexOffset / 512));
  } finally {
    await sealed.close();
  }
});
