/**
 * File systems the kernel wrote (mkfs.ext4 with the kernel path's options, then a real mount):
 * dadi's reader lists and reads them exactly as the kernel does (htree directories, sparse files,
 * in-inode and shared block xattrs, POSIX ACLs, fast and slow symlinks, devices, hard links), and
 * dadi's writer changes them (a layer on top removing and adding names in an htree directory,
 * removing files whose xattr block others share) leaving a file system e2fsck finds clean and
 * the kernel reads as the reader does.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, truncate, writeFile, link } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { Ext4Writer } from '../../../src/fs/ext4/writer.ts';
import { applyLayerTo } from '../../../src/image/apply/index.ts';
import { Ext4Target } from '../../../src/image/apply/ext4-target.ts';
import { mkfsArgs } from '../../../src/image/convert/mkfs.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { packTar, streamOf } from '../../image/apply/tar-build.ts';
import { assertFsckClean, FileDisk, readerTree } from './support.ts';

const NEEDS = { root: true, commands: ['mkfs.ext4', 'mount', 'umount', 'setfattr', 'mknod', 'e2fsck'] };
const BIG_NAMES = 4000;

/** ACL user::rw- user:1000:r-- group::r-- mask::r-- other::--- in the VFS xattr form. */
function vfsAcl(): Buffer {
  const entries: Array<[number, number, number]> = [[0x01, 6, 0xffffffff], [0x02, 4, 1000], [0x04, 4, 0xffffffff], [0x10, 4, 0xffffffff], [0x20, 0, 0xffffffff]];
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => { b.writeUInt16LE(tag, 4 + i * 8); b.writeUInt16LE(perm, 6 + i * 8); b.writeUInt32LE(id, 8 + i * 8); });
  return b;
}

async function populate(mnt: string): Promise<void> {
  await mkdir(join(mnt, 'big'));
  for (let i = 0; i < BIG_NAMES; i++) await writeFile(join(mnt, 'big', `entry-${i}-${'x'.repeat(i % 50)}`), `${i}\n`);
  const sparse = await open(join(mnt, 'sparse'), 'w');
  await sparse.write('head', 0);
  await sparse.write('middle', 50 << 20);
  await sparse.close();
  await truncate(join(mnt, 'sparse'), 100 << 20);
  await writeFile(join(mnt, 'big-file'), Buffer.alloc(9 << 20, 7));
  await mkdir(join(mnt, 'x'));
  const large = Buffer.alloc(2000, 0x61).toString('hex');
  for (const f of ['a', 'b', 'c']) {
    await writeFile(join(mnt, 'x', f), f);
    execFileSync('setfattr', ['-n', 'user.small', '-v', 'in the inode', join(mnt, 'x', f)]);
    // Identical large values: the kernel shares one xattr block between the three inodes.
    execFileSync('setfattr', ['-n', 'user.large', '-v', `0x${large}`, join(mnt, 'x', f)]);
  }
  execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${vfsAcl().toString('hex')}`, join(mnt, 'x', 'a')]);
  await symlink('x/a', join(mnt, 'fast-link'));
  await symlink(`${'long/'.repeat(30)}target`, join(mnt, 'slow-link'));
  await link(join(mnt, 'x', 'b'), join(mnt, 'hard-b'));
  execFileSync('mknod', [join(mnt, 'dev'), 'c', '4', '300']);
}

test('the reader reads a kernel-made ext4 as the kernel does, and the writer changes it cleanly', { timeout: 300_000 }, async (t) => {
  if (!requireSystem(t, NEEDS)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'kernel.img');
  execFileSync('truncate', ['-s', '1G', image]);
  execFileSync('mkfs.ext4', [...mkfsArgs(), image]);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const mounted = async <T>(ro: boolean, fn: () => Promise<T>): Promise<T> => {
    execFileSync('mount', ['-t', 'ext4', '-o', `loop,${ro ? 'ro' : 'rw'}`, image, mnt]);
    try { return await fn(); } finally { execFileSync('umount', [mnt]); }
  };
  await mounted(false, () => populate(mnt));
  const kernelView = () => mounted(true, () => walkTree(mnt, { exclude: ['/lost+found'] }));

  const disk = FileDisk.open(image);
  t.after(() => disk.close());
  const reader = await Ext4Reader.open(disk, image);
  const big = await reader.inode(await reader.resolve('/big'));
  assert.ok((big.flags & 0x1000) !== 0, 'the kernel indexed /big (htree)');
  assert.deepEqual(diffTrees(await readerTree(reader, { exclude: ['/lost+found'] }), await kernelView()), []);
  assert.deepEqual((await reader.extents('/sparse')).map((r) => r.length), [4096, 4096], 'holes have no disk ranges');

  // A layer on top: half of the htree directory removed, names added, shared-xattr files removed.
  const layer = await packTar([
    { name: 'big', type: 'directory', mode: 0o755 },
    ...Array.from({ length: BIG_NAMES / 2 }, (_, i) => ({ name: `big/.wh.entry-${2 * i}-${'x'.repeat((2 * i) % 50)}`, data: '' })),
    ...Array.from({ length: 300 }, (_, i) => ({ name: `big/new-${i}`, data: `new ${i}\n` })),
    { name: 'x/.wh.a', data: '' }, { name: 'x/.wh.c', data: '' },
    { name: 'x/d', data: 'd', pax: { 'SCHILY.xattr.user.large': 'y'.repeat(3000) } },
  ]);
  const writer = await Ext4Writer.open(disk, image);
  await applyLayerTo(streamOf(layer), new Ext4Target(writer));
  assertFsckClean(image);
  const after = await readerTree(await Ext4Reader.open(disk, image), { exclude: ['/lost+found'] });
  assert.equal([...after.keys()].filter((p) => p.startsWith('/big/')).length, BIG_NAMES / 2 + 300);
  assert.deepEqual(Object.keys(after.get('/x/b')!.xattrs), ['user.large', 'user.small']);
  assert.deepEqual(diffTrees(after, await kernelView()), []);
});
