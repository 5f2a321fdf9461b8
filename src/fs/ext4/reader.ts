/**
 * Reading an ext4 file system in userspace, without mounting: resolve paths (following symlinks
 * inside the image, never out of it), list directories, stat, read files and symlinks, read
 * xattrs, and map a file to the disk byte ranges that hold it (what prefetching a file list
 * needs). Works on any Disk: local layer stacks and lazily fetched registry images alike.
 */
import { FormatError } from '../../errors.ts';
import type { Disk } from '../../io/types.ts';
import { parseDirBlock, type DirEntry } from './directory.ts';
import { hasExtentRoot, readExtentMap, type Extent } from './extents.ts';
import { decodeDevice, isDevice, isDir, isReg, isSymlink, kindOf, type Inode, type InodeKind, type Timestamp } from './inode.ts';
import { FT, INODE_FLAGS, inodeSeed, ROOT_INO } from './layout.ts';
import { Ext4Volume } from './volume.ts';
import { decodeInlineXattrs, decodeXattrBlock, type Xattrs } from './xattr.ts';

export type FsErrorCode = 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'ELOOP' | 'EINVAL' | 'EEXIST' | 'ENOTEMPTY' | 'ENOSPC';

/** A path that cannot be resolved or used as asked; `code` is the errno a kernel would give. */
export class FsPathError extends Error {
  override readonly name = 'FsPathError';
  constructor(readonly code: FsErrorCode, readonly path: string, problem: string) {
    super(`${path}: ${problem}`);
  }
}

export interface Ext4Stat {
  ino: number;
  kind: InodeKind;
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  /** Bytes allocated (i_blocks in 512-byte units). */
  allocated: number;
  rdev?: { major: number; minor: number };
}

export interface Ext4Entry { name: string; ino: number; kind: InodeKind | 'unknown' }

/** A run of the disk: `length` bytes at byte `offset`. */
export interface DiskRange { offset: number; length: number }

const KIND_OF_FT: Record<number, InodeKind | 'unknown'> = {
  [FT.file]: 'file', [FT.dir]: 'directory', [FT.chr]: 'character-device', [FT.blk]: 'block-device', [FT.fifo]: 'fifo', [FT.sock]: 'socket', [FT.symlink]: 'symlink',
};

const MAX_SYMLINKS = 40;
const utf8 = new TextDecoder();

export function splitPath(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/** Directories whose name index is kept (a path lookup in a big directory then costs one Map get). */
const INDEXED_DIRS = 256;

export class Ext4Reader {
  private readonly dirIndex = new Map<number, Map<string, number>>();

  protected constructor(readonly vol: Ext4Volume) {}

  /** Forgets cached directory contents (a writer calls this once it has changed directories). */
  protected forgetDirIndex(): void {
    this.dirIndex.clear();
  }

  static async open(disk: Disk, name: string): Promise<Ext4Reader> {
    return new Ext4Reader(await Ext4Volume.open(disk, name));
  }

  get name(): string { return this.vol.name; }

  inode(ino: number): Promise<Inode> { return this.vol.inode(ino); }

  /** The file's runs (logical block → physical block), in logical order. */
  async blockMap(inode: Inode): Promise<Extent[]> {
    if ((inode.flags & INODE_FLAGS.inlineData) !== 0) throw new FormatError(this.name, 0, `inode ${inode.ino}: inline data is not supported`);
    if ((inode.flags & INODE_FLAGS.extents) === 0 || !hasExtentRoot(inode.block)) {
      if (inode.size === 0 || (isSymlink(inode) && inode.size < 60)) return [];
      throw new FormatError(this.name, 0, `inode ${inode.ino}: block-mapped (ext2/ext3-style) files are not supported`);
    }
    return (await readExtentMap(this.vol.io, this.vol.sb, inode.ino, inode.generation, inode.block, this.name)).extents;
  }

  /** The names of directory `dir` ('.' and '..' left out). */
  async entries(dir: Inode, withDots = false): Promise<DirEntry[]> {
    if (!isDir(dir)) throw new FsPathError('ENOTDIR', `inode ${dir.ino}`, 'not a directory');
    const bs = this.vol.blockSize;
    const indexed = (dir.flags & INODE_FLAGS.index) !== 0;
    const seed = this.vol.csum && !indexed ? inodeSeed(this.vol.sb, dir.ino, dir.generation) : undefined;
    const out: DirEntry[] = [];
    for (const e of await this.blockMap(dir)) {
      if (e.uninit) continue;
      for (let i = 0; i < e.length; i++) {
        if ((e.logical + i) * bs >= dir.size) break;
        const block = e.physical + i;
        const buf = await this.vol.io.meta(block);
        for (const d of parseDirBlock(buf, bs, this.name, block * bs, seed)) {
          const n = d.name;
          if (!withDots && ((n.length === 1 && n[0] === 0x2e) || (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e))) continue;
          out.push(d);
        }
      }
    }
    return out;
  }

  /** `name` in directory `dir`, or null. */
  async lookupIn(dir: Inode, name: string): Promise<number | null> {
    let index = this.dirIndex.get(dir.ino);
    if (!index) {
      index = new Map();
      for (const e of await this.entries(dir, true)) index.set(Buffer.from(e.name).toString('latin1'), e.ino);
      if (this.dirIndex.size >= INDEXED_DIRS) this.dirIndex.delete(this.dirIndex.keys().next().value!);
      this.dirIndex.set(dir.ino, index);
    }
    return index.get(Buffer.from(name, 'utf8').toString('latin1')) ?? null;
  }

  /**
   * The inode at `path` (absolute or relative to the root). Symlinks among the parents are
   * followed within the image (an absolute target restarts at the image root); the last
   * component is followed only with `follow`.
   */
  async resolve(path: string, follow = false): Promise<number> {
    let budget = MAX_SYMLINKS;
    const walk = async (start: number, parts: string[], followLast: boolean, shown: string): Promise<number> => {
      let ino = start;
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        const dir = await this.inode(ino);
        if (!isDir(dir)) throw new FsPathError('ENOTDIR', shown, `${parts.slice(0, i).join('/') || '/'} is not a directory`);
        if (part === '..') {
          // The root's parent is the root: a target cannot climb out of the image.
          if (ino !== ROOT_INO) ino = (await this.lookupIn(dir, '..')) ?? ROOT_INO;
          continue;
        }
        const next = await this.lookupIn(dir, part);
        if (next === null) throw new FsPathError('ENOENT', shown, 'no such file or directory');
        const node = await this.inode(next);
        const last = i === parts.length - 1;
        if (isSymlink(node) && (!last || followLast)) {
          if (--budget < 0) throw new FsPathError('ELOOP', shown, 'too many levels of symbolic links');
          const target = await this.readlinkInode(node);
          const base = target.startsWith('/') ? ROOT_INO : ino;
          ino = await walk(base, splitPath(target), true, shown);
          continue;
        }
        ino = next;
      }
      return ino;
    };
    return walk(ROOT_INO, splitPath(path), follow, path);
  }

  async statInode(inode: Inode): Promise<Ext4Stat> {
    return {
      ino: inode.ino,
      kind: kindOf(inode.mode),
      mode: inode.mode & 0o7777,
      uid: inode.uid,
      gid: inode.gid,
      size: inode.size,
      nlink: inode.linksCount,
      atime: inode.atime,
      mtime: inode.mtime,
      ctime: inode.ctime,
      allocated: inode.blocks * 512,
      ...(isDevice(inode) ? { rdev: decodeDevice(inode.block) } : {}),
    };
  }

  async stat(path: string, follow = false): Promise<Ext4Stat> {
    return this.statInode(await this.inode(await this.resolve(path, follow)));
  }

  /** The entries of the directory at `path` (symlinks followed), sorted by name. */
  async list(path: string): Promise<Ext4Entry[]> {
    const dir = await this.inode(await this.resolve(path, true));
    if (!isDir(dir)) throw new FsPathError('ENOTDIR', path, 'not a directory');
    return (await this.entries(dir))
      .map((e) => ({ name: utf8.decode(e.name), ino: e.ino, kind: KIND_OF_FT[e.fileType] ?? 'unknown' }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async readlinkInode(inode: Inode): Promise<string> {
    if (!isSymlink(inode)) throw new FsPathError('EINVAL', `inode ${inode.ino}`, 'not a symbolic link');
    if ((inode.flags & INODE_FLAGS.extents) === 0 && inode.size < 60) return utf8.decode(inode.block.subarray(0, inode.size));
    return utf8.decode(await this.readInode(inode, 0, inode.size));
  }

  async readlink(path: string): Promise<string> {
    return this.readlinkInode(await this.inode(await this.resolve(path, false)));
  }

  async xattrsOf(inode: Inode): Promise<Xattrs> {
    const out: Xattrs = new Map();
    decodeInlineXattrs(inode.inlineXattrs, this.name, 0, out);
    if (inode.fileAcl !== 0) {
      if (inode.fileAcl >= this.vol.sb.blocksCount) throw new FormatError(this.name, 0, `inode ${inode.ino}: xattr block ${inode.fileAcl} is outside the file system`);
      decodeXattrBlock(await this.vol.io.meta(inode.fileAcl), inode.fileAcl, this.vol.csum ? this.vol.sb.csumSeed : undefined, this.name, out);
    }
    return out;
  }

  async xattrs(path: string): Promise<Xattrs> {
    return this.xattrsOf(await this.inode(await this.resolve(path, false)));
  }

  /** `length` bytes of the file from `offset` (short at the end of the file); holes read as zeros. */
  async readInode(inode: Inode, offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(inode.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const bs = this.vol.blockSize;
    for (const e of await this.blockMap(inode)) {
      if (e.uninit) continue;
      const from = Math.max(offset, e.logical * bs);
      const to = Math.min(end, (e.logical + e.length) * bs);
      if (from >= to) continue;
      const diskAt = e.physical * bs + (from - e.logical * bs);
      await this.vol.io.disk.read(out.subarray(from - offset, to - offset), diskAt);
    }
    return out;
  }

  /** The whole file in chunks of up to `chunk` bytes (symlinks at `path` followed). */
  async *readFile(path: string, chunk = 1 << 20): AsyncGenerator<Uint8Array> {
    const inode = await this.inode(await this.resolve(path, true));
    if (isDir(inode)) throw new FsPathError('EISDIR', path, 'is a directory');
    if (!isReg(inode)) throw new FsPathError('EINVAL', path, `is a ${kindOf(inode.mode)}, not a regular file`);
    for (let at = 0; at < inode.size; at += chunk) yield await this.readInode(inode, at, Math.min(chunk, inode.size - at));
  }

  /**
   * The disk byte ranges holding the file at `path` (symlinks followed), in file order, adjacent
   * runs merged and the tail clipped to the file size; holes are left out.
   */
  async extents(path: string): Promise<DiskRange[]> {
    const inode = await this.inode(await this.resolve(path, true));
    if (!isReg(inode) && !isDir(inode)) throw new FsPathError('EINVAL', path, `is a ${kindOf(inode.mode)}, which has no data blocks`);
    const bs = this.vol.blockSize;
    const out: DiskRange[] = [];
    for (const e of await this.blockMap(inode)) {
      if (e.uninit) continue;
      const length = Math.min(e.length * bs, inode.size - e.logical * bs);
      if (length <= 0) continue;
      const offset = e.physical * bs;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === offset) last.length += length;
      else out.push({ offset, length });
    }
    return out;
  }
}
