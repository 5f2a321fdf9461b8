/**
 * The userspace ext4 target against the host-directory target and GNU tar: the same layer stacks
 * (every entry type and metadata kind, binary xattrs, long names, whiteouts, opaque directories,
 * type changes, hard links across layers) give the same tree read back through dadi's reader,
 * e2fsck -fn finds the file system clean after every layer, and the kernel, mounting the image,
 * sees exactly what the reader sees.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { ApplyError, applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree, type DiffOptions } from '../../helpers/tree.ts';
import { applyExt4, assertFsckClean, diskToImage, freshFs, readerTree, withLoopMount } from '../../fs/ext4/support.ts';
import { everyTypeEntries, handBuiltLayer, typeChangeStack, whiteoutStack } from './layer-sets.ts';
import { referenceApply } from './reference.ts';
import { packTar, streamOf } from './tar-build.ts';

const FSCK = { commands: ['e2fsck'] };
const HOST = { root: true, commands: ['mknod', 'mkfifo', 'tar', 'getfattr', 'setfattr', 'mount', 'e2fsck'] };

/** Applies `layers` to a fresh userspace ext4, checking e2fsck after each; returns the reader's tree. */
async function ext4Apply(t: TestContext, layers: Buffer[]) {
  const dir = await tempDir(t);
  const disk = await freshFs(256 << 20);
  const image = join(dir, 'fs.img');
  for (const layer of layers) {
    await applyExt4(disk, [layer]);
    await diskToImage(disk, image);
    assertFsckClean(image);
  }
  const tree = await readerTree(await Ext4Reader.open(disk, 'test disk'), { exclude: ['/lost+found'] });
  return { dir, image, tree };
}

async function compareAll(t: TestContext, layers: Buffer[], opts: DiffOptions & { gnuTar?: boolean } = {}): Promise<void> {
  const { dir, image, tree } = await ext4Apply(t, layers);
  if (!requireSystem(t, HOST)) return;
  // The kernel reads the image exactly as dadi's reader does, times included.
  const mounted = await withLoopMount(image, dir, (mnt) => walkTree(mnt, { exclude: ['/lost+found'] }));
  assert.deepEqual(diffTrees(tree, mounted), []);
  // The host-directory target and GNU tar agree with it.
  const host = join(dir, 'host');
  const ref = join(dir, 'ref');
  await mkdir(host);
  await mkdir(ref);
  for (const l of layers) await applyLayer(streamOf(l), host);
  assert.deepEqual(diffTrees(tree, await walkTree(host), opts), []);
  if (opts.gnuTar === false) return;
  referenceApply(ref, layers, dir);
  assert.deepEqual(diffTrees(tree, await walkTree(ref), opts), []);
}

test('userspace ext4: every entry type, mode, owner, time and xattr; binary PAX xattrs and GNU long names; e2fsck-clean; same tree as the host target, GNU tar and the kernel', async (t) => {
  if (!requireSystem(t, FSCK)) return;
  // GNU tar dates x at "now" (x/long-symlink comes back into x later); both targets use x's header time.
  await compareAll(t, [await packTar(everyTypeEntries()), handBuiltLayer()], { ignoreAt: { '/x': ['mtimeNs'] } });
});

test('userspace ext4: whiteouts, opaque directories, hard links to lower files and type changes across layers', async (t) => {
  if (!requireSystem(t, FSCK)) return;
  await compareAll(t, await whiteoutStack());
  // GNU tar cannot put a file or a symlink where a non-empty directory is: the host target is the reference there.
  await compareAll(t, await typeChangeStack(), { gnuTar: false });
});

test('userspace ext4: a directory keeps its own times as children come and go, whatever the clock says', async (t) => {
  if (!requireSystem(t, FSCK)) return;
  const at = new Date(1_600_000_000_000);
  const { tree } = await ext4Apply(t, [
    await packTar([{ name: 'd', type: 'directory', mode: 0o755, mtime: at }, { name: 'd/a', data: 'a' }]),
    await packTar([{ name: 'd/b', data: 'b' }, { name: 'd/.wh.a', data: '' }, { name: 'implied/deep/f', data: 'f', mtime: at }]),
  ]);
  assert.equal(tree.get('/d')!.mtimeNs, String(1_600_000_000n * 10n ** 9n));
  assert.deepEqual([...tree.keys()].filter((p) => p.startsWith('/d/')), ['/d/b']);
  assert.deepEqual([tree.get('/implied')!.mode, tree.get('/implied')!.mtimeNs], [0o755, String(1_600_000_000n * 10n ** 9n)]);
});

test('userspace ext4: hostile entries are refused with the same errors as on a host directory', async (t) => {
  if (!requireSystem(t, FSCK)) return;
  const sym = (name: string, linkname: string) => ({ name, type: 'symlink' as const, linkname });
  const cases: Array<{ layers: Array<Parameters<typeof packTar>[0]>; entry: string; why: RegExp }> = [
    { layers: [[{ name: '../escape', data: 'x' }]], entry: '../escape', why: /escapes the root/ },
    { layers: [[sym('evil', '..'), { name: 'evil/f', data: 'x' }]], entry: 'evil/f', why: /"evil", which is a symlink/ },
    { layers: [[sym('lnk', '/etc')], [{ name: 'lnk/passwd', data: 'x' }]], entry: 'lnk/passwd', why: /"lnk", which is a symlink/ },
    { layers: [[sym('lnk', '/etc')], [{ name: 'lnk/.wh.passwd', data: '' }]], entry: 'lnk/.wh.passwd', why: /whiteout goes through "lnk"/ },
    { layers: [[sym('lnk', '/etc'), { name: 'h', type: 'link', linkname: 'lnk/passwd' }]], entry: 'h', why: /hard link target goes through "lnk"/ },
    { layers: [[{ name: 'h', type: 'link', linkname: 'nope' }]], entry: 'h', why: /hard link target "nope" does not exist/ },
    { layers: [[{ name: 'd', type: 'directory' }, { name: 'h', type: 'link', linkname: 'd' }]], entry: 'h', why: /is a directory/ },
  ];
  const dir = await tempDir(t);
  for (const c of cases) {
    const disk = await freshFs(64 << 20);
    const tars = await Promise.all(c.layers.map((l) => packTar(l)));
    await applyExt4(disk, tars.slice(0, -1));
    await assert.rejects(applyExt4(disk, tars.slice(-1)), (err: unknown) => {
      assert.ok(err instanceof ApplyError, String(err));
      assert.equal(err.entry, c.entry);
      assert.match(err.message, c.why);
      return true;
    });
    // What the layer applied before the refused entry is a consistent file system.
    const image = join(dir, 'hostile.img');
    await diskToImage(disk, image);
    assertFsckClean(image);
  }
});
