import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { FormatError } from '../../src/errors.ts';
import { MemorySource } from '../../src/io/memory.ts';
import { MemorySink } from '../../src/io/sink.ts';
import { lookupIndex } from '../../src/format/lsmt/read.ts';
import { openLayer, openLayerSource, type DetectedLayer } from '../../src/format/open-layer.ts';
import { TarWrapSink } from '../../src/format/tar/writer.ts';
import { ZFileWriter } from '../../src/format/zfile/writer.ts';
import { vector } from '../helpers/env.ts';
import { logicalSha256, manifest } from '../helpers/lsmt.ts';

async function hashOf(layer: DetectedLayer): Promise<string> {
  return logicalSha256((s, n, v) => lookupIndex(layer.index, s, n, v), layer.data, layer.virtualSize);
}

const singleLayerVectors = manifest().files.filter((f) => f.logical?.sha256 && /lsmt|zfile-of-lsmt/.test((f as { kind?: string }).kind ?? '')
  && !/writable/.test((f as { kind?: string }).kind ?? ''));

for (const f of singleLayerVectors) {
  test(`openLayer detects and reads ${f.name}`, async () => {
    const layer = await openLayer(vector(f.name));
    try {
      assert.equal(layer.virtualSize, f.logical!.virtual_size);
      assert.equal(await hashOf(layer), f.logical!.sha256);
    } finally {
      await layer.close();
    }
  });
}

test('wrappers are reported: tar > zfile(lz4, 4K) for A.lz4.bs4.tar.zlsmt', async () => {
  const layer = await openLayer(vector('A.lz4.bs4.tar.zlsmt'));
  try {
    assert.deepEqual(layer.wrappers.map((w) => w.kind), ['tar', 'zfile']);
    const z = layer.wrappers[1]!;
    assert.ok(z.kind === 'zfile' && z.algo === 'lz4' && z.blockSize === 4096 && z.checksum);
    assert.equal(layer.kind, 'committed');
  } finally {
    await layer.close();
  }
});

async function tarOf(bytes: Uint8Array): Promise<Uint8Array> {
  const out = new MemorySink();
  const tar = await TarWrapSink.create(out);
  await tar.write(bytes);
  await tar.close();
  return out.bytes();
}

async function zfileOf(bytes: Uint8Array): Promise<Uint8Array> {
  const out = new MemorySink();
  const z = await ZFileWriter.create(out, { algo: 'zstd', blockSize: 8192, checksum: true, workers: 0 });
  await z.write(bytes);
  await z.close();
  return out.bytes();
}

test('nesting in other orders: tar(lsmt) and zfile(tar(lsmt))', async () => {
  const plain = await readFile(vector('A.lsmt'));
  const want = manifest().files.find((f) => f.name === 'A.lsmt')!.logical!.sha256;
  const tarred = await tarOf(plain);
  const l1 = await openLayerSource(new MemorySource(tarred, 'a.tar'), 'a.tar');
  assert.deepEqual(l1.wrappers.map((w) => w.kind), ['tar']);
  assert.equal(await hashOf(l1), want);
  await l1.close();
  const zt = await zfileOf(tarred);
  const l2 = await openLayerSource(new MemorySource(zt, 'a.tar.zfile'), 'a.tar.zfile');
  assert.deepEqual(l2.wrappers.map((w) => w.kind), ['zfile', 'tar']);
  assert.equal(await hashOf(l2), want);
  await l2.close();
});

test('a file that is no layer is refused, naming the file and its first bytes', async () => {
  const junk = new TextEncoder().encode('#!/bin/sh\necho hello, this is no layer\n');
  await assert.rejects(openLayerSource(new MemorySource(junk, 'script.sh'), 'script.sh'), (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.equal(e.file, 'script.sh');
    assert.match(e.message, /not a layer.*first bytes 23 21 2f 62/);
    return true;
  });
  await assert.rejects(openLayerSource(new MemorySource(new Uint8Array(0), 'empty'), 'empty'), /empty/);
  // A ZFile whose payload is not LSMT: the error names the nesting.
  const z = await zfileOf(new Uint8Array(8192).fill(7));
  await assert.rejects(openLayerSource(new MemorySource(z, 'sevens.zfile'), 'sevens.zfile'), /sevens\.zfile \(inside zfile\).*first bytes 07 07/);
});

test('a writable data file alone is refused with a hint to pass its index', async () => {
  await assert.rejects(openLayer(vector('A.rw.data')), /writable layer data file without a trailer.*index file/);
  await assert.rejects(openLayer(vector('A.rw.index')), /index file of a writable layer/);
});
