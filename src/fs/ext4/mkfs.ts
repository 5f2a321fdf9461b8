/**
 * mkfs in userspace: the same file system `mkfs.ext4 -b 4096 -O ^has_journal,^resize_inode -G 1`
 * lays out (features of Debian's mke2fs.conf ext4 minus the journal and the resize inode; flex_bg
 * groups of one, so each group carries its own bitmaps and inode table), with every input that
 * mke2fs would draw at random or from the clock given: UUID, directory hash seed, creation time.
 * Unused groups stay uninitialised (INODE_UNINIT, BLOCK_UNINIT) and every inode table is declared
 * zeroed, which a new writable layer is: so mkfs writes well under a megabyte of a 64 GiB disk.
 */
import type { Disk } from '../../io/types.ts';
import { writeDirBlock, type DirEntry } from './directory.ts';
import { toExtents, writeExtentTree } from './extents.ts';
import { gdtBlocks, groupHasSuper, groupSpan, initialBlockBitmap, initialInodeBitmap, type GroupSpan } from './geometry.ts';
import { BlockIo } from './block-io.ts';
import { emptyInode, encodeInode, EXTRA_ISIZE, type Inode } from './inode.ts';
import {
  BG_FLAGS, bitmapCsum, COMPAT, decodeSuperblock, encodeGroupDesc, EXT4_MAGIC, ext4Crc, FT, INCOMPAT, INODE_FLAGS, inodeSeed, RO_COMPAT,
  ROOT_INO, S_IFDIR, SUPERBLOCK_OFFSET, type GroupDesc,
} from './layout.ts';

export interface MkfsOptions {
  /** Bytes of the disk to use (rounded down to whole blocks). */
  size: number;
  uuid: string;
  hashSeed: string;
  /** Creation time of the file system, its root and lost+found (seconds since the epoch). */
  time: number;
  /** Bytes per inode (default 16384, as mke2fs.conf). */
  inodeRatio?: number;
  label?: string;
}

const BLOCK_SIZE = 4096;
const INODE_SIZE = 256;
const DESC_SIZE = 64;
const FIRST_INO = 11;
const LOST_FOUND_BLOCKS = 4;

export const MKFS_FEATURES = {
  compat: COMPAT.extAttr | COMPAT.dirIndex,
  incompat: INCOMPAT.filetype | INCOMPAT.extents | INCOMPAT.bit64 | INCOMPAT.flexBg,
  roCompat: RO_COMPAT.sparseSuper | RO_COMPAT.largeFile | RO_COMPAT.hugeFile | RO_COMPAT.dirNlink | RO_COMPAT.extraIsize | RO_COMPAT.metadataCsum,
} as const;

function parseUuid(text: string, what: string): Uint8Array {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`mkfs: ${what} ${JSON.stringify(text)} is not a UUID`);
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

interface Geometry { blocksCount: number; groupCount: number; inodesPerGroup: number; itableBlocks: number; gdtBlocks: number }

function geometry(size: number, inodeRatio: number): Geometry {
  const bpg = BLOCK_SIZE * 8;
  let blocksCount = Math.floor(size / BLOCK_SIZE);
  const inodesWanted = Math.floor((blocksCount * BLOCK_SIZE) / inodeRatio);
  for (;;) {
    const groupCount = Math.ceil(blocksCount / bpg);
    const perItableBlock = BLOCK_SIZE / INODE_SIZE;
    let ipg = Math.ceil(inodesWanted / groupCount);
    ipg = Math.max(FIRST_INO + 1, Math.ceil(ipg / perItableBlock) * perItableBlock);
    ipg = Math.min(ipg, bpg);
    const itableBlocks = (ipg * INODE_SIZE) / BLOCK_SIZE;
    const gdt = gdtBlocks(groupCount, DESC_SIZE, BLOCK_SIZE);
    // A last group too small to hold its own metadata and some data is dropped, as mke2fs does.
    const last = blocksCount - (groupCount - 1) * bpg;
    const overhead = 2 + itableBlocks + (groupHasSuper(groupCount - 1) ? 1 + gdt : 0);
    if (groupCount > 1 && last < overhead + 50) { blocksCount -= last; continue; }
    if (last < overhead + 50 + (groupCount === 1 ? 1 + LOST_FOUND_BLOCKS : 0)) throw new Error(`mkfs: ${size} bytes are too small for an ext4 file system`);
    if (groupCount * ipg > 2 ** 32 - 1) throw new Error(`mkfs: ${size} bytes need more inodes than ext4 can count`);
    return { blocksCount, groupCount, inodesPerGroup: ipg, itableBlocks, gdtBlocks: gdt };
  }
}

function superblockBytes(o: MkfsOptions, g: Geometry, overhead: number): Uint8Array {
  const raw = new Uint8Array(1024);
  const v = new DataView(raw.buffer);
  const lo = (n: number) => n % 2 ** 32;
  const hi = (n: number) => Math.floor(n / 2 ** 32);
  const reserved = Math.floor(g.blocksCount * 0.05);
  v.setUint32(0x0, g.groupCount * g.inodesPerGroup, true);
  v.setUint32(0x4, lo(g.blocksCount), true);
  v.setUint32(0x8, lo(reserved), true);
  v.setUint32(0x14, 0, true);
  v.setUint32(0x18, 2, true);
  v.setUint32(0x1c, 2, true);
  v.setUint32(0x20, BLOCK_SIZE * 8, true);
  v.setUint32(0x24, BLOCK_SIZE * 8, true);
  v.setUint32(0x28, g.inodesPerGroup, true);
  v.setUint32(0x30, o.time, true);
  v.setUint16(0x36, 0xffff, true);
  v.setUint16(0x38, EXT4_MAGIC, true);
  v.setUint16(0x3a, 1, true); // clean
  v.setUint16(0x3c, 1, true); // errors: continue
  v.setUint32(0x40, o.time, true);
  v.setUint32(0x4c, 1, true); // dynamic revision
  v.setUint32(0x54, FIRST_INO, true);
  v.setUint16(0x58, INODE_SIZE, true);
  v.setUint32(0x5c, MKFS_FEATURES.compat, true);
  v.setUint32(0x60, MKFS_FEATURES.incompat, true);
  v.setUint32(0x64, MKFS_FEATURES.roCompat, true);
  raw.set(parseUuid(o.uuid, 'uuid'), 0x68);
  if (o.label) {
    const label = Buffer.from(o.label, 'utf8');
    if (label.length > 16) throw new Error(`mkfs: label ${JSON.stringify(o.label)} is longer than 16 bytes`);
    raw.set(label, 0x78);
  }
  raw.set(parseUuid(o.hashSeed, 'hash seed'), 0xec);
  raw[0xfc] = 1; // half_md4
  v.setUint16(0xfe, DESC_SIZE, true);
  v.setUint32(0x100, 0x4 | 0x8, true); // user_xattr, acl
  v.setUint32(0x108, o.time, true);
  v.setUint32(0x150, hi(g.blocksCount), true);
  v.setUint32(0x154, hi(reserved), true);
  v.setUint16(0x15c, EXTRA_ISIZE, true);
  v.setUint16(0x15e, EXTRA_ISIZE, true);
  v.setUint32(0x160, 0x1, true); // signed directory hash, as on x86
  raw[0x175] = 1; // crc32c
  v.setUint32(0x248, overhead, true);
  v.setUint32(0x3fc, ext4Crc(0xffffffff, raw.subarray(0, 0x3fc)), true);
  return raw;
}

/** Makes the file system on `disk` (from byte 0). */
export async function mkfs(disk: Disk, o: MkfsOptions): Promise<void> {
  if (!disk.writable) throw new Error('mkfs: the disk is read-only');
  if (!Number.isSafeInteger(o.time) || o.time < 0 || o.time >= 2 ** 32) throw new Error(`mkfs: time ${o.time} is not a 32-bit timestamp`);
  const g = geometry(Math.min(o.size, disk.size), o.inodeRatio ?? 16384);
  const io = new BlockIo(disk, BLOCK_SIZE);
  const groups: GroupDesc[] = [];
  let overhead = 0;
  const spans: GroupSpan[] = [];
  // A provisional superblock for the geometry helpers; counts are filled in below.
  const sb = decodeSuperblock(superblockBytes(o, g, 0), 'mkfs');
  for (let i = 0; i < g.groupCount; i++) {
    const span = groupSpan(sb, i);
    spans.push(span);
    const metaStart = span.start + span.superBlocks;
    const used = span.superBlocks + 2 + g.itableBlocks;
    overhead += used;
    const last = i === g.groupCount - 1;
    groups.push({
      blockBitmap: metaStart, inodeBitmap: metaStart + 1, inodeTable: metaStart + 2,
      freeBlocks: span.blocks - used, freeInodes: g.inodesPerGroup, usedDirs: 0,
      // The last group's block bitmap is always written (mke2fs does the same).
      flags: BG_FLAGS.inodeUninit | BG_FLAGS.itableZeroed | (last || i === 0 ? 0 : BG_FLAGS.blockUninit),
      blockBitmapCsum: 0, inodeBitmapCsum: 0, itableUnused: g.inodesPerGroup,
    });
  }
  const raw = superblockBytes(o, g, overhead);
  const final = decodeSuperblock(raw, 'mkfs');

  // Group 0 holds the root directory and lost+found, right after its inode table.
  const g0 = groups[0]!;
  const rootBlock = g0.inodeTable + g.itableBlocks;
  const lostFound = rootBlock + 1;
  g0.freeBlocks -= 1 + LOST_FOUND_BLOCKS;
  g0.freeInodes -= FIRST_INO;
  g0.itableUnused -= FIRST_INO;
  g0.usedDirs = 2;
  g0.flags = BG_FLAGS.itableZeroed;

  const stamp = { sec: o.time, nsec: 0 };
  const dirInode = (ino: number, mode: number, blocks: number, first: number, links: number): Inode => {
    const inode = emptyInode(ino);
    Object.assign(inode, { mode: S_IFDIR | mode, size: blocks * BLOCK_SIZE, atime: stamp, ctime: stamp, mtime: stamp, crtime: stamp, linksCount: links,
      blocks: blocks * (BLOCK_SIZE / 512), flags: INODE_FLAGS.extents });
    inode.block = writeExtentTree(io, final, ino, 0, toExtents([{ logical: 0, physical: first, length: blocks }]), []);
    return inode;
  };
  const name = (s: string) => Buffer.from(s);
  const root = dirInode(ROOT_INO, 0o755, 1, rootBlock, 3);
  const lpf = dirInode(FIRST_INO, 0o700, LOST_FOUND_BLOCKS, lostFound, 2);
  const rootEntries: DirEntry[] = [
    { ino: ROOT_INO, name: name('.'), fileType: FT.dir }, { ino: ROOT_INO, name: name('..'), fileType: FT.dir },
    { ino: FIRST_INO, name: name('lost+found'), fileType: FT.dir },
  ];
  writeDirBlock(io.fresh(rootBlock), BLOCK_SIZE, rootEntries, inodeSeed(final, ROOT_INO, 0));
  writeDirBlock(io.fresh(lostFound), BLOCK_SIZE, [{ ino: FIRST_INO, name: name('.'), fileType: FT.dir }, { ino: ROOT_INO, name: name('..'), fileType: FT.dir }],
    inodeSeed(final, FIRST_INO, 0));
  for (let i = 1; i < LOST_FOUND_BLOCKS; i++) writeDirBlock(io.fresh(lostFound + i), BLOCK_SIZE, [], inodeSeed(final, FIRST_INO, 0));

  // Inodes 1..11: the reserved ones as mke2fs writes them (no extra fields; the bad-blocks inode dated).
  const itable = io.fresh(g0.inodeTable);
  for (let ino = 1; ino < FIRST_INO; ino++) {
    const inode = ino === ROOT_INO ? root : emptyInode(ino);
    if (ino !== ROOT_INO) {
      inode.extraIsize = 0;
      if (ino === 1) Object.assign(inode, { atime: stamp, ctime: stamp, mtime: stamp });
    }
    encodeInode(final, inode, itable.subarray((ino - 1) * INODE_SIZE, ino * INODE_SIZE));
  }
  encodeInode(final, lpf, itable.subarray((FIRST_INO - 1) * INODE_SIZE, FIRST_INO * INODE_SIZE));

  // Bitmaps of group 0 and of the last group (the others stay uninitialised).
  const writeBitmaps = (i: number, usedInodes: number, extraUsed: number) => {
    const gd = groups[i]!;
    const bb = initialBlockBitmap(final, i, gd);
    for (let b = 0; b < extraUsed; b++) {
      const rel = gd.inodeTable + g.itableBlocks + b - spans[i]!.start;
      bb[rel >> 3]! |= 1 << (rel & 7);
    }
    io.fresh(gd.blockBitmap).set(bb);
    gd.blockBitmapCsum = bitmapCsum(final, bb.subarray(0, (final.blocksPerGroup) / 8));
    if (usedInodes > 0) {
      const ib = initialInodeBitmap(final);
      for (let k = 0; k < usedInodes; k++) ib[k >> 3]! |= 1 << (k & 7);
      io.fresh(gd.inodeBitmap).set(ib);
      gd.inodeBitmapCsum = bitmapCsum(final, ib.subarray(0, final.inodesPerGroup / 8));
    }
  };
  writeBitmaps(0, FIRST_INO, 1 + LOST_FOUND_BLOCKS);
  if (g.groupCount > 1) writeBitmaps(g.groupCount - 1, 0, 0);

  const v = new DataView(raw.buffer);
  const freeBlocks = groups.reduce((n, gd) => n + gd.freeBlocks, 0);
  v.setUint32(0xc, freeBlocks % 2 ** 32, true);
  v.setUint32(0x158, Math.floor(freeBlocks / 2 ** 32), true);
  v.setUint32(0x10, groups.reduce((n, gd) => n + gd.freeInodes, 0), true);

  // Descriptors, then the superblock and its backups (each naming its group, each checksummed).
  const gdt = new Uint8Array(g.gdtBlocks * BLOCK_SIZE);
  groups.forEach((gd, i) => encodeGroupDesc(final, i, gd, gdt, i * DESC_SIZE));
  for (let i = 0; i < g.groupCount; i++) {
    const span = spans[i]!;
    if (span.superBlocks === 0) continue;
    const copy = raw.slice();
    new DataView(copy.buffer).setUint16(0x5a, i, true);
    new DataView(copy.buffer).setUint32(0x3fc, ext4Crc(0xffffffff, copy.subarray(0, 0x3fc)), true);
    io.fresh(span.start).set(copy, i === 0 ? SUPERBLOCK_OFFSET : 0);
    for (let b = 0; b < g.gdtBlocks; b++) io.fresh(span.start + 1 + b).set(gdt.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE));
  }
  await io.flush();
}
