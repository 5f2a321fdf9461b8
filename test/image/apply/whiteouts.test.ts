/**
 * Layer stacking: whiteouts, opaque directories and type changes. Where GNU tar plus the bench
 * script's whiteout pass agree with OCI semantics, the trees must be identical; the cases where
 * they cannot agree (same-layer entries spared, a file replacing a non-empty directory) are
 * checked against the OCI rules directly.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { referenceApply } from './reference.ts';
import { typeChangeStack, whiteoutStack } from './layer-sets.ts';
import { packTar, streamOf, type PackEntry } from './tar-build.ts';

const SYSTEM = { root: true, commands: ['tar', 'getfattr'] };
const dir = (name: string, extra: Partial<PackEntry> = {}): PackEntry => ({ name, type: 'directory', mode: 0o755, ...extra });
const file = (name: string, data: string, extra: Partial<PackEntry> = {}): PackEntry => ({ name, mode: 0o644, data, ...extra });

async function applyAll(root: string, layers: Buffer[]) {
  const stats = [];
  for (const l of layers) stats.push(await applyLayer(streamOf(l), root));
  return stats;
}

async function ls(path: string): Promise<string[]> {
  return (await readdir(path)).sort();
}

test('whiteouts, opaque dirs and hard links to lower files; same tree as the bench script with GNU tar', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const [lower, upper] = await whiteoutStack();
  const scratch = await tempDir(t);
  const ours = join(scratch, 'ours');
  const ref = join(scratch, 'ref');
  await mkdir(ours);
  await mkdir(ref);
  const [, s2] = await applyAll(ours, [lower, upper]);
  referenceApply(ref, [lower, upper], scratch);
  const mine = await walkTree(ours);
  assert.deepEqual(diffTrees(mine, await walkTree(ref)), []);

  assert.equal(s2!.whiteouts, 4);
  assert.equal(s2!.opaqueDirs, 1);
  assert.deepEqual(await ls(join(ours, 'a')), ['keep']);
  assert.deepEqual(await ls(join(ours, 'opq')), ['new-after', 'new-before']);
  assert.equal(mine.get('/opq')!.mode, 0o700);
  assert.equal(mine.get('/a')!.mtimeNs, String(1_650_000_000n * 10n ** 9n));
  assert.equal(mine.get('/other/link-to-lower')!.linkGroup, '/base/shared');
  assert.deepEqual([mine.get('/other/link-to-lower')!.uid, mine.get('/other/link-to-lower')!.mode], [33, 0o600]);
  assert.equal(await readFile(join(ours, 'replaced'), 'utf8'), 'v2, longer than before\n');
  assert.ok(![...mine.keys()].some((p) => p.includes('.wh.')), 'whiteout files are never created');
});

test('opaque marker spares this layer\'s entries, before or after it, also in re-added subdirectories', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const root = await tempDir(t);
  await applyAll(root, [
    await packTar([dir('o'), file('o/lower', 'l\n'), dir('o/sub'), file('o/sub/lower-in-sub', 'l\n'), file('o/sub/also-lower', 'l\n'), dir('o/sub/deep'), file('o/sub/deep/x', 'x\n')]),
    await packTar([
      dir('o'), dir('o/sub'), file('o/sub/mine-before', 'm\n'),
      file('o/.wh..wh..opq', ''),
      file('o/mine-after', 'm\n'),
      // A whiteout of a name this same layer added does not remove it (OCI: whiteouts hide lower layers only).
      file('o/sub/.wh.mine-before', ''),
    ]),
  ]);
  assert.deepEqual(await ls(join(root, 'o')), ['mine-after', 'sub']);
  assert.deepEqual(await ls(join(root, 'o/sub')), ['mine-before'], 'lower contents of a directory this layer re-added are hidden too');
});

test('opaque marker before its own entries, with parents only implied', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const root = await tempDir(t);
  await applyAll(root, [
    await packTar([dir('p'), dir('p/q'), file('p/q/old', 'o\n'), file('p/q/older', 'o\n')]),
    await packTar([file('p/q/.wh..wh..opq', ''), file('p/q/new', 'n\n'), file('missing/.wh..wh..opq', ''), file('missing2/.wh.x', '')]),
  ]);
  assert.deepEqual(await ls(join(root, 'p/q')), ['new']);
  assert.deepEqual(await ls(root), ['p'], 'whiteouts under missing directories create nothing');
});

test('type changes: file over directory, directory over file, symlink over directory; directory over directory keeps contents', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const root = await tempDir(t);
  await applyAll(root, await typeChangeStack());
  const tree = await walkTree(root);
  assert.equal(tree.get('/fd')!.type, 'file');
  assert.equal(await readFile(join(root, 'fd'), 'utf8'), 'now a file\n');
  assert.ok(!tree.has('/fd/child') && !tree.has('/fd/sub/g'));
  assert.deepEqual([tree.get('/df')!.type, tree.get('/df')!.mode], ['directory', 0o711]);
  assert.deepEqual(await ls(join(root, 'df')), ['inside']);
  assert.deepEqual([tree.get('/sd')!.type, tree.get('/sd')!.target], ['symlink', 'elsewhere']);
  assert.deepEqual(await ls(join(root, 'dd')), ['added', 'kept']);
  assert.deepEqual([tree.get('/dd')!.mode, tree.get('/dd')!.uid, tree.get('/dd')!.gid], [0o750, 2, 3]);
  assert.equal(tree.get('/ld')!.type, 'directory', 'a directory entry replaces a symlink rather than following it');
  assert.deepEqual(await ls(join(root, 'fd')).catch((e: NodeJS.ErrnoException) => e.code), 'ENOTDIR');
  assert.deepEqual(await ls(join(root, 'ld')), ['real']);
});

test('a replaced file does not change other hard links to its old inode', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const root = await tempDir(t);
  await applyAll(root, [
    await packTar([file('f', 'old\n'), { name: 'g', type: 'link', linkname: 'f' }]),
    await packTar([file('f', 'new\n')]),
  ]);
  assert.equal(await readFile(join(root, 'g'), 'utf8'), 'old\n');
  assert.equal(await readFile(join(root, 'f'), 'utf8'), 'new\n');
});

test('AUFS metadata entries are skipped, neither created nor treated as whiteouts', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const root = await tempDir(t);
  const [, stats] = await applyAll(root, [
    await packTar([dir('sub'), file('sub/keep', 'k\n')]),
    await packTar([
      dir('.wh..wh.plnk'), file('.wh..wh.plnk/123.456', 'aufs link store\n'), file('.wh..wh.aufs', ''),
      file('sub/.wh..wh.orph', ''), dir('sub'), file('sub/new', 'n\n'),
    ]),
  ]);
  assert.deepEqual(await ls(root), ['sub']);
  assert.deepEqual(await ls(join(root, 'sub')), ['keep', 'new']);
  assert.deepEqual([stats!.ignored, stats!.whiteouts, stats!.opaqueDirs], [4, 0, 0]);
});
