/**
 * Every entry type and metadata kind, checked directly and against GNU tar extracting the same
 * archive (the reference wherever the semantics coincide).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { getAttribute } from 'fs-xattr';
import { compress as zstdCompress } from 'zstd-napi';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { devMajor, devMinor, diffTrees, walkTree } from '../../helpers/tree.ts';
import { referenceApply } from './reference.ts';
import { BIN, CAPS, everyTypeEntries, GNU_LONG, GNU_TARGET, handBuiltLayer, LONG_DIR, LONG_FILE, LONG_TARGET, pseudoRandom } from './layer-sets.ts';
import { packTar, streamOf } from './tar-build.ts';

const SYSTEM = { root: true, commands: ['mknod', 'mkfifo', 'tar', 'getfattr', 'setfattr'] };

/** A scratch dir with empty `ours` (our applier's root) and `ref` (GNU tar's) beside each other. */
async function applyScratch(t: TestContext): Promise<{ scratch: string; ours: string; ref: string }> {
  const scratch = await tempDir(t);
  const ours = join(scratch, 'ours');
  const ref = join(scratch, 'ref');
  await Promise.all([mkdir(ours), mkdir(ref)]);
  return { scratch, ours, ref };
}

test('every entry type, mode, owner, time and xattr; same tree as GNU tar', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const { scratch, ours, ref } = await applyScratch(t);
  const layer = await packTar(everyTypeEntries());
  const stats = await applyLayer(streamOf(layer), ours);
  referenceApply(ref, [layer], scratch);

  assert.deepEqual(stats.entries, { 'file': 8, 'directory': 9, 'symlink': 3, 'hardlink': 2, 'character-device': 1, 'block-device': 1, 'fifo': 1 });
  assert.equal(stats.bytesWritten, (1 << 20) + '#!/bin/sh\nsgid\nowned\nxattrs\nlong name\nlate\n'.length);

  const mine = await walkTree(ours);
  const theirs = await walkTree(ref);
  // GNU tar sets a directory's times when extraction moves out of it, so x/long-symlink, which
  // comes back into x later, leaves x's mtime at "now" there; we set directory times at the end.
  assert.deepEqual(diffTrees(mine, theirs, { ignoreAt: { '/x': ['mtimeNs'] } }), []);
  assert.equal(mine.get('/x')!.mtimeNs, String(1_700_000_000n * 10n ** 9n));

  // Direct checks, so a shared mistake with the reference cannot hide.
  const n = (p: string) => mine.get(p)!;
  assert.equal(n('/d/setuid').mode, 0o4755);
  assert.equal(n('/d/setgid').mode, 0o2711);
  assert.equal(n('/d/setgid').uid, 1000);
  assert.equal(n('/d/sticky').mode, 0o1777);
  assert.deepEqual([n('/d/owned').uid, n('/d/owned').gid, n('/d/owned').mode], [4242, 4343, 0o640]);
  assert.equal(n('/d/owned').mtimeNs, String(1_500_000_000n * 10n ** 9n));
  assert.equal(n('/d').mtimeNs, String(1_600_000_001n * 10n ** 9n), 'directory mtime set after its children');
  assert.equal(n('/d').mode, 0o750);
  assert.deepEqual([n('/d/link').type, n('/d/link').target, n('/d/link').uid, n('/d/link').gid], ['symlink', 'setuid', 7, 8]);
  assert.equal(n('/d/link').mtimeNs, String(1_400_000_000n * 10n ** 9n));
  assert.equal(n('/other/hl').linkGroup, '/d/owned');
  assert.equal(n('/d/owned').linkGroup, '/d/owned');
  assert.equal(n('/d/setuid').linkGroup, undefined);
  const blk = await stat(join(ours, 'dev/blk'), { bigint: true });
  assert.ok(blk.isBlockDevice());
  assert.deepEqual([devMajor(blk.rdev), devMinor(blk.rdev)], [259, 65_537]);
  const chr = await stat(join(ours, 'dev/null2'), { bigint: true });
  assert.ok(chr.isCharacterDevice());
  assert.deepEqual([devMajor(chr.rdev), devMinor(chr.rdev)], [1, 3]);
  assert.equal(n('/dev/fifo').type, 'fifo');
  assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.test', join(ours, 'x/attrs')], { encoding: 'utf8' }), 'hello');
  assert.equal((await getAttribute(join(ours, 'x/attrs'), 'user.other')).toString(), 'v=1 2');
  assert.equal((await getAttribute(join(ours, 'x/dir-attrs'), 'user.dir')).toString(), 'on a dir');
  assert.equal(n(`/${LONG_FILE}`).sha256, createHash('sha256').update('long name\n').digest('hex'));
  assert.equal(n('/x/long-symlink').target, LONG_TARGET);
  assert.equal(n(`/${LONG_DIR}/${'h'.repeat(110)}`).linkGroup, n(`/${LONG_FILE}`).linkGroup);
  assert.equal(n('/d/big.bin').sha256, createHash('sha256').update(pseudoRandom(1 << 20, 'big')).digest('hex'));
});

test('binary PAX xattrs (security.capability), PAX uid/gid/mtime, GNU ././@LongLink names; same tree as GNU tar', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const { scratch, ours, ref } = await applyScratch(t);
  const layer = handBuiltLayer();
  await applyLayer(streamOf(layer), ours);
  referenceApply(ref, [layer], scratch);
  const mine = await walkTree(ours);
  assert.deepEqual(diffTrees(mine, await walkTree(ref)), []);

  assert.deepEqual(await getAttribute(join(ours, 'bin/ping'), 'security.capability'), CAPS);
  assert.deepEqual(await getAttribute(join(ours, 'bin/ping'), 'user.bin'), BIN);
  const hex = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', join(ours, 'bin/ping')], { encoding: 'utf8' });
  assert.match(hex, new RegExp(`security.capability=0x${CAPS.toString('hex')}`));
  assert.deepEqual(mine.get('/bin/sym')!.xattrs, { 'trusted.dadi': BIN.toString('hex') });
  assert.deepEqual(mine.get('/bin/ping')!.xattrs, { 'security.capability': CAPS.toString('hex'), 'user.bin': BIN.toString('hex') }, 'the symlink xattr went on the link, not its target');
  const ids = mine.get('/bin/big-ids')!;
  assert.deepEqual([ids.uid, ids.gid, ids.mtimeNs], [3_000_000, 3_000_001, '1700000000500000000']);
  assert.equal(mine.get(`/${GNU_LONG}`)!.sha256, createHash('sha256').update('gnu long\n').digest('hex'));
  assert.equal(mine.get(`/gnu/${'g'.repeat(140)}`)!.mode, 0o711);
  assert.equal(mine.get(`/gnu/${'s'.repeat(120)}`)!.target, GNU_TARGET);
  assert.equal(mine.get(`/gnu/${'h'.repeat(120)}`)!.linkGroup, mine.get(`/${GNU_LONG}`)!.linkGroup);
  assert.ok(mine.get(`/${GNU_LONG}`)!.linkGroup);
});

test('gzip and zstd layers give the same tree as the plain tar, with progress in input bytes', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const scratch = await tempDir(t);
  const plain = await packTar(everyTypeEntries());
  const variants: Record<string, Buffer> = { plain, gzip: gzipSync(plain), zstd: await zstdCompress(plain) };
  const trees = [];
  for (const [kind, blob] of Object.entries(variants)) {
    const dir = join(scratch, kind);
    await mkdir(dir);
    let last = 0;
    let calls = 0;
    const stats = await applyLayer(streamOf(blob), dir, { onProgress: (b) => { assert.ok(b >= last); last = b; calls++; } });
    assert.equal(last, blob.length, `${kind}: progress reaches the blob size`);
    assert.ok(calls > 1, `${kind}: progress is reported along the way`);
    assert.equal(stats.bytesWritten, (1 << 20) + 43);
    trees.push(await walkTree(dir));
  }
  assert.deepEqual(diffTrees(trees[1]!, trees[0]!), []);
  assert.deepEqual(diffTrees(trees[2]!, trees[0]!), []);
  assert.ok(variants.zstd!.length < plain.length && variants.gzip!.length < plain.length);
});
