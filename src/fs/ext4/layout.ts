/**
 * The ext4 on-disk structures dadi reads and writes: superblock, group descriptor and inode,
 * decoded into plain objects and encoded back in place, so fields dadi does not know survive a
 * read-modify-write untouched (the raw bytes are kept and only known fields are overwritten).
 * Offsets follow the kernel's `struct ext4_super_block`, `ext4_group_desc` and `ext4_inode`.
 */
import { FormatError } from '../../errors.ts';
import { crc32c } from '../../format/crc32c.ts';

export const SUPERBLOCK_OFFSET = 1024;
export const EXT4_MAGIC = 0xef53;
export const ROOT_INO = 2;

export const COMPAT = { extAttr: 0x8, resizeInode: 0x10, dirIndex: 0x20 } as const;
export const INCOMPAT = { filetype: 0x2, recover: 0x4, journalDev: 0x8, metaBg: 0x10, extents: 0x40, bit64: 0x80, mmp: 0x100,
  flexBg: 0x200, eaInode: 0x400, dirData: 0x1000, csumSeed: 0x2000, largedir: 0x4000, inlineData: 0x8000, encrypt: 0x10000, casefold: 0x20000 } as const;
export const RO_COMPAT = { sparseSuper: 0x1, largeFile: 0x2, hugeFile: 0x8, gdtCsum: 0x10, dirNlink: 0x20, extraIsize: 0x40,
  metadataCsum: 0x400 } as const;

/** Incompatible features the reader understands; anything else is refused rather than misread. */
export const READABLE_INCOMPAT = INCOMPAT.filetype | INCOMPAT.extents | INCOMPAT.bit64 | INCOMPAT.flexBg | INCOMPAT.csumSeed | INCOMPAT.largedir;

export const BG_FLAGS = { inodeUninit: 0x1, blockUninit: 0x2, itableZeroed: 0x4 } as const;

export const INODE_FLAGS = { hugeFile: 0x40000, extents: 0x80000, index: 0x1000, inlineData: 0x10000000, eaInode: 0x200000 } as const;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

/** Directory entry file types (ext4 `EXT4_FT_*`). */
export const FT = { unknown: 0, file: 1, dir: 2, chr: 3, blk: 4, fifo: 5, sock: 6, symlink: 7 } as const;

export function fileTypeOfMode(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG: return FT.file;
    case S_IFDIR: return FT.dir;
    case S_IFCHR: return FT.chr;
    case S_IFBLK: return FT.blk;
    case S_IFIFO: return FT.fifo;
    case S_IFSOCK: return FT.sock;
    case S_IFLNK: return FT.symlink;
    default: return FT.unknown;
  }
}

/** ext4 metadata checksums: raw CRC-32C, the caller chaining the register (the kernel's ext4_chksum). */
export function ext4Crc(init: number, data: Uint8Array): number {
  return crc32c(data, init);
}

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

export interface Superblock {
  raw: Uint8Array;
  inodesCount: number;
  blocksCount: number;
  reservedBlocks: number;
  freeBlocks: number;
  freeInodes: number;
  firstDataBlock: number;
  blockSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  firstIno: number;
  inodeSize: number;
  compat: number;
  incompat: number;
  roCompat: number;
  uuid: Uint8Array;
  descSize: number;
  /** Seed of every metadata checksum but the superblock's. */
  csumSeed: number;
  groupCount: number;
  minExtraIsize: number;
  wantExtraIsize: number;
}

export function hasMetadataCsum(sb: Superblock): boolean {
  return (sb.roCompat & RO_COMPAT.metadataCsum) !== 0;
}

function u64(v: DataView, lo: number, hi: number, wide: boolean): number {
  return v.getUint32(lo, true) + (wide ? v.getUint32(hi, true) * 2 ** 32 : 0);
}

/** Decodes the 1024-byte superblock; `name` labels errors. */
export function decodeSuperblock(raw: Uint8Array, name: string): Superblock {
  const v = new DataView(raw.buffer, raw.byteOffset, 1024);
  if (v.getUint16(0x38, true) !== EXT4_MAGIC) throw new FormatError(name, SUPERBLOCK_OFFSET + 0x38, 'no ext4 superblock (magic 0xEF53 missing)');
  const incompat = v.getUint32(0x60, true);
  const wide = (incompat & INCOMPAT.bit64) !== 0;
  const logBlock = v.getUint32(0x18, true);
  if (logBlock > 6) throw new FormatError(name, SUPERBLOCK_OFFSET + 0x18, `block size 2^${10 + logBlock} is not supported`);
  const blockSize = 1024 << logBlock;
  const roCompat = v.getUint32(0x64, true);
  const uuid = raw.slice(0x68, 0x78);
  const descSize = wide ? v.getUint16(0xfe, true) : 32;
  const revLevel = v.getUint32(0x4c, true);
  const sb: Superblock = {
    raw,
    inodesCount: v.getUint32(0x0, true),
    blocksCount: u64(v, 0x4, 0x150, wide),
    reservedBlocks: u64(v, 0x8, 0x154, wide),
    freeBlocks: u64(v, 0xc, 0x158, wide),
    freeInodes: v.getUint32(0x10, true),
    firstDataBlock: v.getUint32(0x14, true),
    blockSize,
    blocksPerGroup: v.getUint32(0x20, true),
    inodesPerGroup: v.getUint32(0x28, true),
    firstIno: revLevel === 0 ? 11 : v.getUint32(0x54, true),
    inodeSize: revLevel === 0 ? 128 : v.getUint16(0x58, true),
    compat: v.getUint32(0x5c, true),
    incompat,
    roCompat,
    uuid,
    descSize,
    csumSeed: (incompat & INCOMPAT.csumSeed) !== 0 ? v.getUint32(0x270, true) : ext4Crc(0xffffffff, uuid),
    groupCount: 0,
    minExtraIsize: v.getUint16(0x15c, true),
    wantExtraIsize: v.getUint16(0x15e, true),
  };
  if (sb.blocksPerGroup === 0 || sb.inodesPerGroup === 0 || sb.blocksPerGroup > blockSize * 8 || sb.inodesPerGroup > blockSize * 8) {
    throw new FormatError(name, SUPERBLOCK_OFFSET + 0x20, `impossible geometry: ${sb.blocksPerGroup} blocks and ${sb.inodesPerGroup} inodes per group`);
  }
  if (sb.inodeSize < 128 || sb.inodeSize > blockSize || (sb.inodeSize & (sb.inodeSize - 1)) !== 0) {
    throw new FormatError(name, SUPERBLOCK_OFFSET + 0x58, `inode size ${sb.inodeSize} is not a power of two between 128 and the block size`);
  }
  if (descSize < 32 || (wide && descSize < 64) || descSize > 1024) throw new FormatError(name, SUPERBLOCK_OFFSET + 0xfe, `group descriptor size ${descSize} is not valid`);
  sb.groupCount = Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
  if (sb.groupCount * sb.inodesPerGroup !== sb.inodesCount) {
    throw new FormatError(name, SUPERBLOCK_OFFSET, `${sb.inodesCount} inodes do not fill ${sb.groupCount} groups of ${sb.inodesPerGroup}`);
  }
  if (hasMetadataCsum(sb)) {
    const want = v.getUint32(0x3fc, true);
    const got = ext4Crc(0xffffffff, raw.subarray(0, 0x3fc));
    if (want !== got) throw new FormatError(name, SUPERBLOCK_OFFSET + 0x3fc, `superblock checksum 0x${want.toString(16)} does not match its contents (0x${got.toString(16)})`);
  }
  return sb;
}

/** Writes the counters that change as the file system is used back into `sb.raw`, with its checksum. */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const v = new DataView(sb.raw.buffer, sb.raw.byteOffset, 1024);
  const wide = (sb.incompat & INCOMPAT.bit64) !== 0;
  v.setUint32(0xc, sb.freeBlocks % 2 ** 32, true);
  if (wide) v.setUint32(0x158, Math.floor(sb.freeBlocks / 2 ** 32), true);
  v.setUint32(0x10, sb.freeInodes, true);
  if (hasMetadataCsum(sb)) v.setUint32(0x3fc, ext4Crc(0xffffffff, sb.raw.subarray(0, 0x3fc)), true);
  return sb.raw;
}

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  flags: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  itableUnused: number;
}

export function decodeGroupDesc(buf: Uint8Array, at: number, descSize: number): GroupDesc {
  const v = new DataView(buf.buffer, buf.byteOffset + at, descSize);
  const wide = descSize >= 64;
  const hi16 = (off: number) => (wide ? v.getUint16(off, true) * 65536 : 0);
  return {
    blockBitmap: u64(v, 0x0, 0x20, wide),
    inodeBitmap: u64(v, 0x4, 0x24, wide),
    inodeTable: u64(v, 0x8, 0x28, wide),
    freeBlocks: v.getUint16(0xc, true) + hi16(0x2c),
    freeInodes: v.getUint16(0xe, true) + hi16(0x2e),
    usedDirs: v.getUint16(0x10, true) + hi16(0x30),
    flags: v.getUint16(0x12, true),
    blockBitmapCsum: v.getUint16(0x18, true) + (wide ? v.getUint16(0x38, true) * 65536 : 0),
    inodeBitmapCsum: v.getUint16(0x1a, true) + (wide ? v.getUint16(0x3a, true) * 65536 : 0),
    itableUnused: v.getUint16(0x1c, true) + hi16(0x32),
  };
}

/** Encodes `g` into `buf` at `at` (other bytes kept) with its checksum when the sb has metadata_csum. */
export function encodeGroupDesc(sb: Superblock, group: number, g: GroupDesc, buf: Uint8Array, at: number): void {
  const size = sb.descSize;
  const v = new DataView(buf.buffer, buf.byteOffset + at, size);
  const wide = size >= 64;
  const lo32 = (n: number) => n % 2 ** 32;
  const hi32 = (n: number) => Math.floor(n / 2 ** 32);
  v.setUint32(0x0, lo32(g.blockBitmap), true);
  v.setUint32(0x4, lo32(g.inodeBitmap), true);
  v.setUint32(0x8, lo32(g.inodeTable), true);
  v.setUint16(0xc, g.freeBlocks & 0xffff, true);
  v.setUint16(0xe, g.freeInodes & 0xffff, true);
  v.setUint16(0x10, g.usedDirs & 0xffff, true);
  v.setUint16(0x12, g.flags, true);
  v.setUint16(0x18, g.blockBitmapCsum & 0xffff, true);
  v.setUint16(0x1a, g.inodeBitmapCsum & 0xffff, true);
  v.setUint16(0x1c, g.itableUnused & 0xffff, true);
  if (wide) {
    v.setUint32(0x20, hi32(g.blockBitmap), true);
    v.setUint32(0x24, hi32(g.inodeBitmap), true);
    v.setUint32(0x28, hi32(g.inodeTable), true);
    v.setUint16(0x2c, g.freeBlocks >>> 16, true);
    v.setUint16(0x2e, g.freeInodes >>> 16, true);
    v.setUint16(0x30, g.usedDirs >>> 16, true);
    v.setUint16(0x32, g.itableUnused >>> 16, true);
    v.setUint16(0x38, g.blockBitmapCsum >>> 16, true);
    v.setUint16(0x3a, g.inodeBitmapCsum >>> 16, true);
  }
  v.setUint16(0x1e, 0, true);
  if (hasMetadataCsum(sb)) {
    let c = ext4Crc(sb.csumSeed, le32(group));
    c = ext4Crc(c, buf.subarray(at, at + size));
    v.setUint16(0x1e, c & 0xffff, true);
  }
}

/** The crc16-free check: whether a descriptor's checksum matches (metadata_csum file systems only). */
export function groupDescCsumOk(sb: Superblock, group: number, buf: Uint8Array, at: number): boolean {
  if (!hasMetadataCsum(sb)) return true;
  const copy = buf.slice(at, at + sb.descSize);
  const want = new DataView(copy.buffer).getUint16(0x1e, true);
  copy[0x1e] = 0;
  copy[0x1f] = 0;
  const c = ext4Crc(ext4Crc(sb.csumSeed, le32(group)), copy);
  return (c & 0xffff) === want;
}

/** A bitmap checksum as stored (lo 16 bits, plus hi 16 bits with 64-byte descriptors). */
export function bitmapCsum(sb: Superblock, bitmap: Uint8Array): number {
  return ext4Crc(sb.csumSeed, bitmap) >>> 0;
}

/** Checksum seed of one inode's metadata (inode, extent blocks, directory blocks). */
export function inodeSeed(sb: Superblock, ino: number, generation: number): number {
  return ext4Crc(ext4Crc(sb.csumSeed, le32(ino)), le32(generation));
}

export { le32 };
