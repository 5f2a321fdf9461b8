/**
 * Every layer vector read through the stack (LayerStack over the real file readers) hashes to
 * what the manifest says: each single layer in every form (plain, ZFile, tar-wrapped, sealed,
 * writable pair, merged) at its `logical` hash, and every stack the manifest describes with
 * `stacked_logical`, built with the top layer over each form of its parent (found by uuid).
 * (`logical` of the raw ZFiles input.* — decompressed bytes, not layers — and `zfile_logical`
 * are checked by test/format/zfile/conformance.test.ts.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { openStackFromFiles, type LowerSpec } from '../../src/image/chain/files.ts';
import { tempDir, vector, vectorsDir } from '../helpers/env.ts';
import { diskSha256 } from './stack-hash.ts';

interface Logical { virtual_size: number; sha256?: string; stacked_logical?: Logical }
interface Entry {
  name: string;
  kind: string;
  uuid?: string;
  parent_uuid?: string;
  pair?: string;
  logical?: Logical;
  stacked_logical?: Logical;
}

const manifest = JSON.parse(readFileSync(join(vectorsDir, 'manifest.json'), 'utf8')) as { files: Entry[] };
const files = manifest.files;

/** Layer vectors (LSMT in some form), as opposed to raw ZFiles of input.raw and OCI tars. */
function isLayer(e: Entry): boolean {
  return e.kind.startsWith('lsmt') || e.kind === 'zfile-of-lsmt';
}

function lowerOf(e: Entry): LowerSpec {
  if (e.kind === 'lsmt-writable-data') return { data: vector(e.name), index: vector(e.pair!) };
  if (e.kind === 'lsmt-writable-index') return { data: vector(e.pair!), index: vector(e.name) };
  return vector(e.name);
}

function describe(spec: LowerSpec): string {
  return typeof spec === 'string' ? spec.slice(vectorsDir.length + 1) : `${spec.data.slice(vectorsDir.length + 1)}+index`;
}

async function checkStack(lowers: LowerSpec[], want: Logical): Promise<void> {
  const stack = await openStackFromFiles(lowers);
  try {
    assert.equal(stack.size, want.virtual_size);
    assert.equal(await diskSha256(stack), want.sha256);
  } finally {
    await stack.close();
  }
}

const singles = files.filter((e) => isLayer(e) && e.logical?.sha256);
const stacked = files.filter((e) => isLayer(e) && (e.stacked_logical ?? e.logical?.stacked_logical)?.sha256);

test('every vector file is intact (its own size and sha256 as the manifest states)', () => {
  for (const e of files as Array<Entry & { size: number; sha256: string }>) {
    const bytes = readFileSync(vector(e.name));
    assert.equal(bytes.length, e.size, e.name);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), e.sha256, e.name);
  }
});

test('the manifest has the layer vectors this suite is written for', () => {
  assert.ok(singles.length >= 12, `single-layer vectors: ${singles.map((e) => e.name).join(', ')}`);
  assert.ok(stacked.length >= 3, `stacked vectors: ${stacked.map((e) => e.name).join(', ')}`);
  for (const e of stacked) assert.ok(e.parent_uuid, `${e.name} names its parent`);
});

for (const e of singles) {
  test(`${e.name} (${e.kind}) alone reads back to its logical sha256`, async () => {
    await checkStack([lowerOf(e)], e.logical!);
  });
}

for (const top of stacked) {
  const want = (top.stacked_logical ?? top.logical!.stacked_logical)!;
  const parent = files.find((f) => f.uuid && f.uuid.toLowerCase() === top.parent_uuid!.toLowerCase() && f.logical?.sha256);
  // Every form of the parent: the files whose logical content equals the parent's.
  const forms = files.filter((f) => isLayer(f) && f.logical?.sha256 === parent?.logical?.sha256 && f.kind !== 'lsmt-writable-index');
  test(`${top.name} has its parent in the vectors`, () => {
    assert.ok(parent, `no vector has uuid ${top.parent_uuid}`);
    assert.ok(forms.length >= 1);
  });
  for (const bottom of forms) {
    const lowers = [lowerOf(bottom), lowerOf(top)];
    test(`stack ${lowers.map(describe).join(' < ')} reads back to ${top.name}'s stacked sha256`, async () => {
      await checkStack(lowers, want);
    });
  }
}

for (const below of [[], ['A.lsmt']]) {
  test(`the writable pair A.rw as the upper layer over [${below.join(', ')}] reads back to A's logical sha256`, async (t) => {
    const entry = files.find((f) => f.kind === 'lsmt-writable-data')!;
    const dir = await tempDir(t);
    const data = join(dir, 'rw.data');
    const index = join(dir, 'rw.index');
    await copyFile(vector(entry.name), data);
    await copyFile(vector(entry.pair!), index);
    const stack = await openStackFromFiles(below.map(vector), { upper: { data, index } });
    try {
      assert.equal(stack.writable, true);
      assert.equal(stack.size, entry.logical!.virtual_size);
      assert.equal(await diskSha256(stack), entry.logical!.sha256);
    } finally {
      await stack.close();
    }
  });
}
