import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FileSource } from '../../../src/io/file.ts';
import { lookupIndex } from '../../../src/format/lsmt/read.ts';
import { openReadOnlyLayer, openWritablePairReadOnly } from '../../../src/format/lsmt/readonly.ts';
import { vector } from '../../helpers/env.ts';
import { logicalSha256, manifestFile } from '../../helpers/lsmt.ts';

// The logical hashes of A.lsmt, A.sealed, B.lsmt and every wrapped variant are checked through
// layer detection in test/format/open-layer.test.ts; here: the fields and the writable pair.

test('A.lsmt header fields', async () => {
  const layer = await openReadOnlyLayer(await FileSource.open(vector('A.lsmt')), 'A.lsmt');
  try {
    assert.equal(layer.kind, 'committed');
    assert.equal(layer.uuid, '5CA1AB1E-0000-4000-8000-000000000001');
    assert.equal(layer.parentUuid, '00000000-0000-0000-0000-000000000000');
    assert.equal(layer.header.userTag, 'layer A');
    assert.equal(layer.index.count, 10);
  } finally {
    await layer.close();
  }
});

test('A.sealed is a sealed layer with 12 live extents', async () => {
  const layer = await openReadOnlyLayer(await FileSource.open(vector('A.sealed')), 'A.sealed');
  try {
    assert.equal(layer.kind, 'sealed');
    assert.equal(layer.header.flags, 0x03);
    assert.equal(layer.trailer!.indexSize, 12);
    assert.equal(layer.index.count, 12);
  } finally {
    await layer.close();
  }
});

test('A.rw pair reads back to the manifest hash', async () => {
  const layer = await openWritablePairReadOnly(await FileSource.open(vector('A.rw.data')), await FileSource.open(vector('A.rw.index')));
  try {
    assert.equal(layer.kind, 'writable');
    const want = manifestFile('A.rw.data').logical!;
    assert.equal(layer.virtualSize, want.virtual_size);
    const got = await logicalSha256((s, n, v) => lookupIndex(layer.index, s, n, v), layer.data, layer.virtualSize);
    assert.equal(got, want.sha256);
  } finally {
    await layer.close();
  }
});
