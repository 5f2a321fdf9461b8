import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemorySource } from '../../../src/io/memory.ts';
import { MemorySink } from '../../../src/io/sink.ts';
import { commitLayer } from '../../../src/format/lsmt/commit.ts';
import { encodeHeader, headerFields } from '../../../src/format/lsmt/header.ts';
import { lookupIndex, readLayerBytes } from '../../../src/format/lsmt/read.ts';
import { openReadOnlyLayer } from '../../../src/format/lsmt/readonly.ts';

test('sparse RW layer (header 0x13): the index is rebuilt from the image and reads back the same bytes', async () => {
  const vsize = 20 << 20; // > 16383 sectors of data in one run, to exercise the split
  const file = new Uint8Array(4096 + vsize);
  file.set(encodeHeader(headerFields({ flags: 0x13, virtualSize: vsize })), 0);
  const logical = file.subarray(4096);
  for (let i = 0; i < 9 << 20; i++) logical[(1 << 20) + i] = (i % 251) + 1; // 9 MiB run
  logical.fill(7, 15 << 20, (15 << 20) + 512); // one sector
  logical[vsize - 1] = 9; // last byte
  const layer = await openReadOnlyLayer(new MemorySource(file, 'sparse.data'), 'sparse.data');
  assert.equal(layer.kind, 'sparse');
  assert.equal(layer.virtualSize, vsize);
  assert.deepEqual([...layer.index.length.subarray(0, layer.index.count)], [16383, 18432 - 16383, 1, 1]);
  for (let i = 0; i < layer.index.count; i++) assert.equal(layer.index.moffset[i], layer.index.offset[i]! + 8);
  const got = new Uint8Array(vsize);
  await readLayerBytes((s, n, v) => lookupIndex(layer.index, s, n, v), layer.data, got, 0);
  assert.ok(Buffer.from(got).equals(logical));
});

test('an empty layer commits to a valid layer with an empty index', async () => {
  const sink = new MemorySink();
  const empty = { count: 0, offset: new Float64Array(0), length: new Uint32Array(0), moffset: new Float64Array(0), zeroed: new Uint8Array(0), tag: new Uint8Array(0) };
  const res = await commitLayer({ index: empty, data: new MemorySource(new Uint8Array(0)), virtualSize: 1 << 20 }, sink);
  assert.equal(res.records, 0);
  assert.equal(sink.bytes().length, 8192);
  const layer = await openReadOnlyLayer(new MemorySource(sink.bytes(), 'empty.lsmt'), 'empty.lsmt');
  assert.equal(layer.index.count, 0);
  assert.equal(layer.virtualSize, 1 << 20);
});
