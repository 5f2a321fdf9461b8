import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileSource } from '../../../src/io/file.ts';
import { openWritableLayer } from '../../../src/format/lsmt/writable.ts';
import { openLayerSource } from '../../../src/format/open-layer.ts';
import { runDadi, tempDir, vector } from '../../helpers/env.ts';
import { manifest, opContent } from '../../helpers/lsmt.ts';

const UUID_A = '5ca1ab1e-0000-4000-8000-000000000001';

test('dadi layer create / commit / seal / info, end to end on layer A', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'a.data');
  const index = join(dir, 'a.index');
  const created = await runDadi(['layer', 'create', data, index, '--size', '1G']);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout.toString(), /created writable layer/);

  const payload = await readFile(vector('payload.bin'));
  const layer = await openWritableLayer(data, index);
  for (const op of manifest().lsmt_writes['layer A']!) {
    if (op.op === 'write') await layer.write(opContent(op, payload), op.offset);
    else await layer.trim(op.offset, op.length);
  }
  await layer.close();

  const out = join(dir, 'a.lsmt');
  const c = await runDadi(['layer', 'commit', data, index, out, '--uuid', UUID_A, '-m', 'layer A']);
  assert.equal(c.code, 0, c.stderr);
  assert.ok((await readFile(out)).equals(await readFile(vector('A.lsmt'))), 'CLI commit differs from A.lsmt');

  const zt = join(dir, 'a.tar.zlsmt');
  const z = await runDadi(['layer', 'commit', data, index, zt, '--compress', 'zstd', '--block-size', '16K', '--tar', '--uuid', UUID_A, '-m', 'layer A']);
  assert.equal(z.code, 0, z.stderr);
  const info = await runDadi(['layer', 'info', zt, '--json']);
  assert.equal(info.code, 0, info.stderr);
  const j = JSON.parse(info.stdout.toString()) as Record<string, unknown>;
  assert.equal(j.kind, 'committed');
  assert.deepEqual((j.wrappers as { kind: string }[]).map((w) => w.kind), ['tar', 'zfile']);
  assert.equal((j.wrappers as { algo?: string; blockSize?: number }[])[1]!.algo, 'zstd');
  assert.equal((j.wrappers as { algo?: string; blockSize?: number }[])[1]!.blockSize, 16384);
  assert.equal(j.uuid, UUID_A.toUpperCase());
  assert.equal(j.message, 'layer A');
  assert.equal(j.segments, 10);
  assert.equal(j.zeroedSegments, 2);
  assert.equal(j.virtualSize, 1 << 30);
  // The LSMT stream inside the wrappers is exactly A.lsmt.
  const opened = await openLayerSource(await FileSource.open(zt), zt);
  const inner = new Uint8Array(opened.data.size);
  await opened.data.read(inner, 0);
  await opened.close();
  assert.ok(Buffer.from(inner).equals(await readFile(vector('A.lsmt'))));

  const w = await runDadi(['layer', 'info', data, '--index', index]);
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stdout.toString(), /kind:\s+writable/);
  assert.match(w.stdout.toString(), /segments:\s+12 \(10 data, 2 zeroed\)/);

  const s = await runDadi(['layer', 'seal', data, index]);
  assert.equal(s.code, 0, s.stderr);
  const si = await runDadi(['layer', 'info', data]);
  assert.equal(si.code, 0, si.stderr);
  assert.match(si.stdout.toString(), /kind:\s+sealed/);
  assert.match(si.stdout.toString(), /header flags:\s+0x03/);

  const fromSealed = join(dir, 'a2.lsmt');
  const cs = await runDadi(['layer', 'commit-sealed', data, fromSealed, '--uuid', UUID_A, '-m', 'layer A']);
  assert.equal(cs.code, 0, cs.stderr);
  assert.ok((await readFile(fromSealed)).equals(await readFile(vector('A.lsmt'))), 'commit-sealed differs from A.lsmt');
  const notSealed = await runDadi(['layer', 'commit-sealed', out, join(dir, 'x')]);
  assert.equal(notSealed.code, 1);
  assert.match(notSealed.stderr, /is a committed layer, not a sealed writable layer/);
});

test('dadi layer: clear errors for bad input', async (t) => {
  const dir = await tempDir(t);
  const junk = join(dir, 'junk.bin');
  await writeFile(junk, 'hello world, not a layer');
  const r = await runDadi(['layer', 'info', junk]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /junk\.bin.*not a layer.*first bytes 68 65 6c 6c/);
  const bad = await runDadi(['layer', 'commit', vector('A.rw.data'), vector('A.rw.index'), join(dir, 'x'), '--compress', 'gzip']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--compress must be lz4 or zstd/);
  const exists = await runDadi(['layer', 'create', junk, join(dir, 'i'), '--size', '1G']);
  assert.equal(exists.code, 1);
  assert.match(exists.stderr, /EEXIST/);
  // The index exists: the new data file is removed again, the existing index left alone.
  const idxExists = await runDadi(['layer', 'create', join(dir, 'new.data'), junk, '--size', '1G']);
  assert.equal(idxExists.code, 1);
  assert.match(idxExists.stderr, /EEXIST/);
  assert.equal(existsSync(join(dir, 'new.data')), false);
  assert.equal(readFileSync(junk, 'utf8'), 'hello world, not a layer');
});
