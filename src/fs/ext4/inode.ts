/**
 * One ext4 inode: decoded from its slot in the inode table into an object, encoded back with its
 * checksum. Times carry nanoseconds and the two epoch bits of the `_extra` fields, so dates before
 * 1970 and after 2038 survive; owners carry their high 16 bits.
 */
import { FormatError } from '../../errors.ts';
import { ext4Crc, hasMetadataCsum, inodeSeed, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Superblock } from './layout.ts';

/** Seconds and nanoseconds since the epoch. */
export interface Timestamp { sec: number; nsec: number }

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Timestamp;
  ctime: Timestamp;
  mtime: Timestamp;
  crtime: Timestamp;
  dtime: number;
  linksCount: number;
  /** 512-byte units (or file system blocks with the huge_file inode flag), xattr block and tree blocks included. */
  blocks: number;
  flags: number;
  generation: number;
  fileAcl: number;
  /** The 60 bytes of i_block: extent root, fast symlink target or device numbers. */
  block: Uint8Array;
  extraIsize: number;
  /** The in-inode extended attribute area (after the extra fields), raw; empty when there is none. */
  inlineXattrs: Uint8Array;
  /** The slot as read, so fields dadi does not model (i_version, project id) survive a rewrite. */
  raw?: Uint8Array;
}

const GOOD_OLD_SIZE = 128;
/** The extra fields dadi writes: up to and including i_projid. */
export const EXTRA_ISIZE = 32;

function decodeTime(lo: number, extra: number | undefined): Timestamp {
  const signed = lo | 0;
  if (extra === undefined) return { sec: signed, nsec: 0 };
  // The two epoch bits extend the signed 32-bit seconds (kernel ext4_decode_extra_time).
  return { sec: signed + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

function encodeTime(t: Timestamp): { lo: number; extra: number } {
  const lo = t.sec % 2 ** 32;
  const lo32 = lo < 0 ? lo + 2 ** 32 : lo;
  const signedLo = lo32 | 0;
  const epoch = Math.round((t.sec - signedLo) / 2 ** 32) & 3;
  return { lo: lo32, extra: ((t.nsec << 2) | epoch) >>> 0 };
}

export function emptyInode(ino: number): Inode {
  const zero = { sec: 0, nsec: 0 };
  return {
    ino, mode: 0, uid: 0, gid: 0, size: 0, atime: zero, ctime: zero, mtime: zero, crtime: zero, dtime: 0, linksCount: 0, blocks: 0,
    flags: 0, generation: 0, fileAcl: 0, block: new Uint8Array(60), extraIsize: EXTRA_ISIZE, inlineXattrs: new Uint8Array(0),
  };
}

/** Decodes the inode slot `raw` (sb.inodeSize bytes), verifying its checksum when it is in use. */
export function decodeInode(sb: Superblock, ino: number, raw: Uint8Array, name: string, offset: number): Inode {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const extraIsize = sb.inodeSize > GOOD_OLD_SIZE ? v.getUint16(0x80, true) : 0;
  if (sb.inodeSize > GOOD_OLD_SIZE && (GOOD_OLD_SIZE + extraIsize > sb.inodeSize || extraIsize % 4 !== 0)) {
    throw new FormatError(name, offset + 0x80, `inode ${ino}: extra size ${extraIsize} does not fit its ${sb.inodeSize}-byte slot`);
  }
  const has = (field: number) => extraIsize >= field + 4 - GOOD_OLD_SIZE;
  const linksCount = v.getUint16(0x1a, true);
  if (hasMetadataCsum(sb) && (linksCount !== 0 || v.getUint16(0x0, true) !== 0)) {
    const want = v.getUint16(0x7c, true) + (has(0x82) ? v.getUint16(0x82, true) * 65536 : 0);
    const got = inodeCsum(sb, ino, raw, extraIsize);
    const mask = has(0x82) ? 0xffffffff : 0xffff;
    if (want !== ((got & mask) >>> 0)) throw new FormatError(name, offset, `inode ${ino}: checksum 0x${want.toString(16)} does not match its contents`);
  }
  const osdBlocksHi = v.getUint16(0x74, true);
  const xattrStart = GOOD_OLD_SIZE + extraIsize;
  return {
    ino,
    mode: v.getUint16(0x0, true),
    uid: v.getUint16(0x2, true) + v.getUint16(0x78, true) * 65536,
    gid: v.getUint16(0x18, true) + v.getUint16(0x7a, true) * 65536,
    size: v.getUint32(0x4, true) + v.getUint32(0x6c, true) * 2 ** 32,
    atime: decodeTime(v.getUint32(0x8, true), has(0x8c) ? v.getUint32(0x8c, true) : undefined),
    ctime: decodeTime(v.getUint32(0xc, true), has(0x84) ? v.getUint32(0x84, true) : undefined),
    mtime: decodeTime(v.getUint32(0x10, true), has(0x88) ? v.getUint32(0x88, true) : undefined),
    crtime: has(0x94) ? decodeTime(v.getUint32(0x90, true), v.getUint32(0x94, true)) : { sec: 0, nsec: 0 },
    dtime: v.getUint32(0x14, true),
    linksCount,
    blocks: v.getUint32(0x1c, true) + osdBlocksHi * 2 ** 32,
    flags: v.getUint32(0x20, true),
    generation: v.getUint32(0x64, true),
    fileAcl: v.getUint32(0x68, true) + v.getUint16(0x76, true) * 2 ** 32,
    block: raw.slice(0x28, 0x28 + 60),
    extraIsize,
    inlineXattrs: sb.inodeSize > xattrStart ? raw.slice(xattrStart, sb.inodeSize) : new Uint8Array(0),
    raw: raw.slice(0, sb.inodeSize),
  };
}

function inodeCsum(sb: Superblock, ino: number, raw: Uint8Array, extraIsize: number): number {
  const generation = new DataView(raw.buffer, raw.byteOffset, raw.length).getUint32(0x64, true);
  const copy = raw.slice(0, sb.inodeSize);
  copy[0x7c] = 0;
  copy[0x7d] = 0;
  if (extraIsize >= 4) { copy[0x82] = 0; copy[0x83] = 0; }
  return ext4Crc(inodeSeed(sb, ino, generation), copy);
}

/** Encodes `ino` into the slot `out` (sb.inodeSize bytes, overwritten whole) with its checksum. */
export function encodeInode(sb: Superblock, inode: Inode, out: Uint8Array): void {
  if (inode.raw) out.set(inode.raw);
  else out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, out.length);
  const extra = sb.inodeSize > GOOD_OLD_SIZE ? inode.extraIsize : 0;
  v.setUint16(0x0, inode.mode, true);
  v.setUint16(0x2, inode.uid & 0xffff, true);
  v.setUint32(0x4, inode.size % 2 ** 32, true);
  const at = encodeTime(inode.atime);
  const ct = encodeTime(inode.ctime);
  const mt = encodeTime(inode.mtime);
  const cr = encodeTime(inode.crtime);
  v.setUint32(0x8, at.lo, true);
  v.setUint32(0xc, ct.lo, true);
  v.setUint32(0x10, mt.lo, true);
  v.setUint32(0x14, inode.dtime, true);
  v.setUint16(0x18, inode.gid & 0xffff, true);
  v.setUint16(0x1a, inode.linksCount, true);
  v.setUint32(0x1c, inode.blocks % 2 ** 32, true);
  v.setUint32(0x20, inode.flags, true);
  out.set(inode.block, 0x28);
  v.setUint32(0x64, inode.generation, true);
  v.setUint32(0x68, inode.fileAcl % 2 ** 32, true);
  v.setUint32(0x6c, Math.floor(inode.size / 2 ** 32), true);
  v.setUint16(0x74, Math.floor(inode.blocks / 2 ** 32), true);
  v.setUint16(0x76, Math.floor(inode.fileAcl / 2 ** 32), true);
  v.setUint16(0x78, inode.uid >>> 16, true);
  v.setUint16(0x7a, inode.gid >>> 16, true);
  if (extra > 0) {
    v.setUint16(0x80, extra, true);
    const put = (field: number, value: number) => { if (extra >= field + 4 - GOOD_OLD_SIZE) v.setUint32(field, value, true); };
    put(0x84, ct.extra);
    put(0x88, mt.extra);
    put(0x8c, at.extra);
    put(0x90, cr.lo);
    put(0x94, cr.extra);
    const xattrStart = GOOD_OLD_SIZE + extra;
    out.fill(0, xattrStart);
    if (inode.inlineXattrs.length > 0) out.set(inode.inlineXattrs.subarray(0, sb.inodeSize - xattrStart), xattrStart);
  }
  if (hasMetadataCsum(sb)) {
    const c = inodeCsum(sb, inode.ino, out, extra);
    v.setUint16(0x7c, c & 0xffff, true);
    if (extra >= 4) v.setUint16(0x82, c >>> 16, true);
  }
}

export type InodeKind = 'file' | 'directory' | 'symlink' | 'character-device' | 'block-device' | 'fifo' | 'socket';

export function kindOf(mode: number): InodeKind {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'file';
    case S_IFDIR: return 'directory';
    case S_IFLNK: return 'symlink';
    case S_IFCHR: return 'character-device';
    case S_IFBLK: return 'block-device';
    case 0o010000: return 'fifo';
    default: return 'socket';
  }
}

/** Device numbers from i_block (the old 8:8 form in word 0, else the new form in word 1). */
export function decodeDevice(block: Uint8Array): { major: number; minor: number } {
  const v = new DataView(block.buffer, block.byteOffset, 60);
  const old = v.getUint32(0, true);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const dev = v.getUint32(4, true);
  return { major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}

/** i_block for a device node, as the kernel writes it (ext4_set_inode... old_encode_dev / new_encode_dev). */
export function encodeDevice(major: number, minor: number): Uint8Array {
  const block = new Uint8Array(60);
  const v = new DataView(block.buffer);
  if (major < 256 && minor < 256) v.setUint32(0, (major << 8) | minor, true);
  else v.setUint32(4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  return block;
}

export function isDir(inode: Inode): boolean { return (inode.mode & S_IFMT) === S_IFDIR; }
export function isReg(inode: Inode): boolean { return (inode.mode & S_IFMT) === S_IFREG; }
export function isSymlink(inode: Inode): boolean { return (inode.mode & S_IFMT) === S_IFLNK; }
export function isDevice(inode: Inode): boolean { const t = inode.mode & S_IFMT; return t === S_IFCHR || t === S_IFBLK; }
