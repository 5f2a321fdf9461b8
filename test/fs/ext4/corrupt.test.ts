/**
 * Damaged file systems give errors naming the image, the offset and what is wrong, never wrong
 * data: a flipped byte in the superblock, a group descriptor, an inode, a directory block, an
 * extent block or an xattr block; a disk smaller than its file system; no file system at all.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../../src/errors.ts';
import { MemoryDisk } from '../../../src/disk/memory-disk.ts';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { Ext4Writer } from '../../../src/fs/ext4/writer.ts';
import { packTar } from '../../image/apply/tar-build.ts';
import { applyExt4, freshFs } from './support.ts';

async function flip(disk: MemoryDisk, offset: number): Promise<void> {
  const b = new Uint8Array(1);
  await disk.read(b, offset);
  b[0]! ^= 0x40;
  await disk.write(b, offset);
}

async function sample(): Promise<MemoryDisk> {
  const disk = await freshFs(64 << 20);
  // One-block files freed in a second layer leave holes 'frag' must cross: more than four runs, so
  // its extent tree has a block below the inode.
  await applyExt4(disk, [
    await packTar([{ name: 'd', type: 'directory' }, ...Array.from({ length: 12 }, (_, i) => ({ name: `d/f${i}`, data: Buffer.alloc(4096, i) })),
      { name: 'x', data: 'x', pax: { 'SCHILY.xattr.user.big': 'v'.repeat(500) } }]),
    await packTar([...Array.from({ length: 6 }, (_, i) => ({ name: `d/.wh.f${2 * i}`, data: '' })), { name: 'frag', data: Buffer.alloc(12 * 4096, 9) }]),
  ]);
  return disk;
}

async function where(disk: MemoryDisk): Promise<{ inodeAt: number; dirBlock: number; extentBlock: number; xattrBlock: number }> {
  const fs = await Ext4Reader.open(disk, 'img');
  const frag = await fs.inode(await fs.resolve('/frag'));
  const x = await fs.inode(await fs.resolve('/x'));
  const d = await fs.inode(await fs.resolve('/d'));
  const v = new DataView(frag.block.buffer, frag.block.byteOffset, 60);
  assert.equal(v.getUint16(6, true), 1, 'frag needs an extent block');
  const extentBlock = v.getUint32(16, true);
  const dirBlock = new DataView(d.block.buffer, d.block.byteOffset, 60).getUint32(20, true);
  return { inodeAt: fs.vol.groups[0]!.inodeTable * 4096 + (x.ino - 1) * 256 + 0x20, dirBlock, extentBlock, xattrBlock: x.fileAcl };
}

const formatError = (re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof FormatError, String(err));
  assert.match(err.message, /^img: at offset \d+: /);
  assert.match(err.message, re);
  return true;
};

test('a flipped byte anywhere in the metadata is reported, naming what failed its checksum', async () => {
  const cases: Array<[string, (w: Awaited<ReturnType<typeof where>>) => number, (fs: Ext4Reader) => Promise<unknown>, RegExp]> = [
    ['superblock', () => 1024 + 0x10, async () => {}, /superblock checksum/],
    ['group descriptor', () => 4096 + 0x0c, async () => {}, /group descriptor 0: checksum/],
    ['inode', (w) => w.inodeAt, (fs) => fs.stat('/x'), /inode \d+: checksum/],
    ['directory block', (w) => w.dirBlock * 4096 + 40, (fs) => fs.list('/d'), /directory block checksum/],
    ['extent block', (w) => w.extentBlock * 4096 + 20, (fs) => fs.extents('/frag'), /extent block|checksum|extent/],
    ['xattr block', (w) => w.xattrBlock * 4096 + 100, (fs) => fs.xattrs('/x'), /xattr block checksum/],
  ];
  for (const [what, at, use, re] of cases) {
    const disk = await sample();
    await flip(disk, at(await where(disk)));
    await assert.rejects((async () => use(await Ext4Reader.open(disk, 'img')))(), formatError(re), what);
  }
});

test('no file system, or a disk smaller than its file system, is refused at open; so is a read-only disk for the writer', async () => {
  await assert.rejects(Ext4Reader.open(new MemoryDisk(1 << 20), 'img'), formatError(/no ext4 superblock/));
  const disk = await freshFs(64 << 20);
  const small = new MemoryDisk(32 << 20);
  const buf = new Uint8Array(1 << 20);
  await disk.read(buf, 0);
  await small.write(buf, 0);
  await assert.rejects(Ext4Reader.open(small, 'img'), formatError(/larger than the \d+-byte disk/));
  await assert.rejects(Ext4Writer.open(new MemoryDisk(64 << 20, { readOnly: true }), 'img'), /read-only/);
});
