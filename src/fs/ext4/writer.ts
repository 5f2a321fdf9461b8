/**
 * Changing an ext4 file system in userspace, as the tar applier needs: make directories, regular
 * files (data streamed straight to their blocks), symlinks, hard links, device nodes and fifos
 * with their modes, owners, nanosecond times and xattrs; change an existing node's metadata;
 * remove files and whole trees, freeing their blocks, tree blocks, xattr blocks and inodes.
 * Nothing reads the clock: a new node's ctime and crtime are its mtime, and a directory's times
 * change only when it is given new ones, so the result depends only on the calls made.
 * Paths are root-relative ('a/b'); symlinks are never followed (the applier checks parents).
 */
import type { Disk } from '../../io/types.ts';
import { Allocator, type BlockRun } from './allocator.ts';
import { DirState } from './dir-state.ts';
import { MAX_EXTENT_LEN, readExtentMap, toExtents, treeBlocksFor, writeExtentTree, type Extent } from './extents.ts';
import { emptyInode, encodeDevice, EXTRA_ISIZE, isDir, type Inode, type Timestamp } from './inode.ts';
import { FormatError } from '../../errors.ts';
import {
  fileTypeOfMode, FT, INODE_FLAGS, RO_COMPAT, ROOT_INO, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG,
} from './layout.ts';
import { Ext4Reader, FsPathError, splitPath } from './reader.ts';
import { Ext4Volume } from './volume.ts';
import { encodeInlineXattrs, encodeXattrBlock, xattrBlockCsum, xattrBlockRefcount, type Xattrs } from './xattr.ts';

export interface NodeAttrs {
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  atime: Timestamp;
  mtime: Timestamp;
  xattrs: Xattrs;
}

export type SpecialKind = 'character-device' | 'block-device' | 'fifo';

/** The most links an inode may have (the kernel's EXT4_LINK_MAX). */
const LINK_MAX = 65000;

export class Ext4Writer extends Ext4Reader {
  private readonly alloc: Allocator;
  private readonly dirs = new Map<number, DirState>();
  /** Directory paths already resolved to inode numbers (dropped when a directory is removed). */
  private readonly dirPaths = new Map<string, number>([['', ROOT_INO]]);

  private constructor(vol: Ext4Volume) {
    super(vol);
    this.alloc = new Allocator(vol);
  }

  static override async open(disk: Disk, name: string): Promise<Ext4Writer> {
    if (!disk.writable) throw new Error(`${name}: the disk is read-only`);
    const vol = await Ext4Volume.open(disk, name);
    const { sb } = vol;
    // The writer keeps metadata_csum checksums (or none); the older crc16 group checksums it does not write.
    if ((sb.roCompat & RO_COMPAT.gdtCsum) !== 0 && !vol.csum) throw new FormatError(name, 1024 + 0x64, 'ext4 with uninit_bg (crc16 group checksums) is not supported by the writer');
    if (sb.inodeSize < 256) throw new FormatError(name, 1024 + 0x58, `ext4 with ${sb.inodeSize}-byte inodes is not supported by the writer`);
    return new Ext4Writer(vol);
  }

  private async dirState(inode: Inode): Promise<DirState> {
    let d = this.dirs.get(inode.ino);
    if (!d) {
      const map = await this.blockMap(inode);
      const flags = inode.flags;
      d = this.dirs.get(inode.ino) ?? await DirState.load(this.vol.io, this.vol.sb, inode, map, this.name, this.vol.csum);
      this.dirs.set(inode.ino, d);
      if (inode.flags !== flags) this.vol.markInodeDirty(inode); // an htree directory became linear
    }
    return d;
  }

  /** The directory at `rel`; ENOENT / ENOTDIR as the kernel would say. */
  private async dirAt(rel: string): Promise<DirState> {
    const cached = this.dirPaths.get(rel);
    if (cached !== undefined) return this.dirState(await this.inode(cached));
    let ino = ROOT_INO;
    let path = '';
    for (const part of splitPath(rel)) {
      path = path === '' ? part : `${path}/${part}`;
      const known = this.dirPaths.get(path);
      if (known !== undefined) { ino = known; continue; }
      const found = (await this.dirState(await this.inode(ino))).get(Buffer.from(part, 'utf8'));
      if (!found) throw new FsPathError('ENOENT', rel, `${path} does not exist`);
      const inode = await this.inode(found.ino);
      if (!isDir(inode)) throw new FsPathError('ENOTDIR', rel, `${path} is not a directory`);
      this.dirPaths.set(path, found.ino);
      ino = found.ino;
    }
    return this.dirState(await this.inode(ino));
  }

  private split(rel: string): { parent: string; name: Uint8Array } {
    const parts = splitPath(rel);
    if (parts.length === 0) throw new FsPathError('EEXIST', '/', 'the root directory always exists');
    const name = Buffer.from(parts[parts.length - 1]!, 'utf8');
    if (name.length > 255) throw new FsPathError('EINVAL', rel, `name is ${name.length} bytes long; ext4 allows 255`);
    return { parent: parts.slice(0, -1).join('/'), name };
  }

  /** The node at `rel` (never following a final symlink), or null when nothing is there. */
  async lookup(rel: string): Promise<Inode | null> {
    const parts = splitPath(rel);
    if (parts.length === 0) return this.inode(ROOT_INO);
    const { parent, name } = this.split(rel);
    const found = (await this.dirAt(parent)).get(name);
    return found ? this.inode(found.ino) : null;
  }

  /** The names in the directory at `rel`. */
  async childNames(rel: string): Promise<string[]> {
    return (await this.dirAt(rel)).children().map((e) => Buffer.from(e.name).toString('utf8'));
  }

  private async newInode(type: number, attrs: NodeAttrs, links: number): Promise<Inode> {
    const ino = await this.alloc.allocInode(type === S_IFDIR);
    const inode = emptyInode(ino);
    Object.assign(inode, {
      mode: type | (attrs.mode & 0o7777), uid: attrs.uid, gid: attrs.gid, atime: attrs.atime, mtime: attrs.mtime,
      ctime: attrs.mtime, crtime: attrs.mtime, linksCount: links, extraIsize: EXTRA_ISIZE,
    });
    await this.putXattrs(inode, attrs.xattrs);
    this.vol.setInode(inode);
    return inode;
  }

  /** Stores `attrs` as the inode's whole xattr set: inside the inode when they fit, else in a block of their own. */
  private async putXattrs(inode: Inode, attrs: Xattrs): Promise<void> {
    await this.releaseXattrBlock(inode);
    const inline = encodeInlineXattrs(attrs, this.vol.sb.inodeSize - 128 - inode.extraIsize);
    if (inline) { inode.inlineXattrs = inline; return; }
    inode.inlineXattrs = new Uint8Array(0);
    const [run] = await this.alloc.allocBlocks(1);
    const block = run!.physical;
    this.vol.io.fresh(block).set(encodeXattrBlock(attrs, this.vol.blockSize, block, this.vol.csum ? this.vol.sb.csumSeed : undefined));
    inode.fileAcl = block;
    inode.blocks += this.vol.blockSize / 512;
  }

  /** Drops the inode's reference to its xattr block, freeing the block with its last reference. */
  private async releaseXattrBlock(inode: Inode): Promise<void> {
    const block = inode.fileAcl;
    if (block === 0) return;
    inode.fileAcl = 0;
    inode.blocks -= this.vol.blockSize / 512;
    const buf = await this.vol.io.meta(block);
    const refs = xattrBlockRefcount(buf);
    if (refs <= 1) { await this.alloc.freeBlocks(block, 1); return; }
    // Shared (the kernel shares identical xattr blocks): one reference fewer.
    const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
    v.setUint32(4, refs - 1, true);
    if (this.vol.csum) v.setUint32(16, xattrBlockCsum(buf, block, this.vol.sb.csumSeed), true);
    this.vol.io.markDirty(block);
  }

  /** Links `inode` into `parent` under `name`, adding a directory block when every one is full. */
  private async addEntry(parent: DirState, name: Uint8Array, inode: Inode): Promise<void> {
    const ft = fileTypeOfMode(inode.mode);
    if (parent.insert(name, inode.ino, ft)) return;
    const dir = parent.inode;
    const map = await this.blockMap(dir);
    const blocks = Math.ceil(dir.size / this.vol.blockSize);
    const [run] = await this.alloc.allocBlocks(1);
    const runs = map.map((e) => ({ logical: e.logical, physical: e.physical, length: e.length }));
    const last = runs[runs.length - 1];
    if (last && last.physical + last.length === run!.physical && last.length < MAX_EXTENT_LEN) last.length++;
    else runs.push({ logical: blocks, physical: run!.physical, length: 1 });
    await this.setBlockMap(dir, toExtents(runs));
    dir.size += this.vol.blockSize;
    dir.blocks += this.vol.blockSize / 512;
    parent.addBlock(run!.physical);
    if (!parent.insert(name, inode.ino, ft)) throw new Error('ext4: a new directory block has no room for one entry');
    this.vol.markInodeDirty(dir);
  }

  /** Rewrites the inode's extent tree for `extents`, freeing the old tree blocks and counting the new ones. */
  private async setBlockMap(inode: Inode, extents: Extent[]): Promise<void> {
    const old = (inode.flags & INODE_FLAGS.extents) !== 0 && inode.block[0] === 0x0a
      ? (await readExtentMap(this.vol.io, this.vol.sb, inode.ino, inode.generation, inode.block, this.name)).treeBlocks : [];
    for (const b of old) await this.alloc.freeBlocks(b, 1);
    inode.blocks -= old.length * (this.vol.blockSize / 512);
    const need = treeBlocksFor(extents.length, this.vol.blockSize);
    const tree: number[] = [];
    for (const r of need > 0 ? await this.alloc.allocBlocks(need) : []) for (let i = 0; i < r.length; i++) tree.push(r.physical + i);
    inode.block = writeExtentTree(this.vol.io, this.vol.sb, inode.ino, inode.generation, extents, tree);
    inode.flags |= INODE_FLAGS.extents;
    inode.blocks += tree.length * (this.vol.blockSize / 512);
  }

  private async creating(rel: string): Promise<{ parent: DirState; name: Uint8Array }> {
    const { parent: parentRel, name } = this.split(rel);
    const parent = await this.dirAt(parentRel);
    if (parent.get(name)) throw new FsPathError('EEXIST', rel, 'already exists');
    return { parent, name };
  }

  /** A new directory at `rel` (EEXIST when anything is there). */
  async mkdir(rel: string, attrs: NodeAttrs): Promise<void> {
    const { parent, name } = await this.creating(rel);
    const inode = await this.newInode(S_IFDIR, attrs, 2);
    const [run] = await this.alloc.allocBlocks(1);
    inode.block = writeExtentTree(this.vol.io, this.vol.sb, inode.ino, 0, toExtents([{ logical: 0, physical: run!.physical, length: 1 }]), []);
    inode.flags |= INODE_FLAGS.extents;
    inode.size = this.vol.blockSize;
    inode.blocks += this.vol.blockSize / 512;
    this.dirs.set(inode.ino, DirState.create(inode, parent.inode.ino, run!.physical, this.vol.blockSize, this.vol.csum, FT.dir));
    await this.addEntry(parent, name, inode);
    const p = parent.inode;
    // dir_nlink: past the limit a directory's count is 1, "unknown".
    if (p.linksCount !== 1) p.linksCount = p.linksCount + 1 >= LINK_MAX ? 1 : p.linksCount + 1;
    this.vol.markInodeDirty(p);
  }

  /**
   * A new regular file at `rel` of `size` bytes, its data read from `data` (which must yield
   * exactly `size` bytes) straight into its blocks. Returns the bytes written.
   */
  async writeFile(rel: string, attrs: NodeAttrs, size: number, data: AsyncIterable<Uint8Array>): Promise<number> {
    const { parent, name } = await this.creating(rel);
    const inode = await this.newInode(S_IFREG, attrs, 1);
    const bs = this.vol.blockSize;
    const count = Math.ceil(size / bs);
    const runs: BlockRun[] = count > 0 ? await this.alloc.allocBlocks(count) : [];
    const extents: Extent[] = [];
    let logical = 0;
    for (const r of runs) { extents.push(...toExtents([{ logical, physical: r.physical, length: r.length }])); logical += r.length; }
    await this.setBlockMap(inode, extents);
    inode.size = size;
    inode.blocks += count * (bs / 512);
    await this.addEntry(parent, name, inode);
    // Stream the data into the runs, the last block's tail zeroed.
    let written = 0;
    let run = 0;
    let inRun = 0;
    const io = this.vol.io;
    const put = async (bytes: Uint8Array): Promise<void> => {
      let at = 0;
      while (at < bytes.length) {
        const r = runs[run]!;
        const n = Math.min(bytes.length - at, r.length * bs - inRun);
        await io.writeData(r.physical * bs + inRun, bytes.subarray(at, at + n));
        at += n;
        inRun += n;
        if (inRun === r.length * bs) { run++; inRun = 0; }
      }
    };
    for await (const chunk of data) {
      if (written + chunk.length > size) throw new FsPathError('EINVAL', rel, `more data than the ${size} bytes announced`);
      await put(chunk);
      written += chunk.length;
    }
    if (written !== size) throw new FsPathError('EINVAL', rel, `${written} bytes of data for a ${size}-byte file`);
    if (size % bs !== 0) await put(new Uint8Array(bs - (size % bs)));
    return written;
  }

  /** A new symlink at `rel` pointing at `target`: in the inode below 60 bytes, else in a block. */
  async symlink(rel: string, attrs: NodeAttrs, target: string): Promise<void> {
    const { parent, name } = await this.creating(rel);
    const bytes = Buffer.from(target, 'utf8');
    const bs = this.vol.blockSize;
    if (bytes.length === 0 || bytes.length >= bs) throw new FsPathError('EINVAL', rel, `a symlink target of ${bytes.length} bytes is not possible (1..${bs - 1})`);
    const inode = await this.newInode(S_IFLNK, { ...attrs, mode: 0o777 }, 1);
    inode.size = bytes.length;
    if (bytes.length < 60) {
      inode.block = new Uint8Array(60);
      inode.block.set(bytes);
    } else {
      const [run] = await this.alloc.allocBlocks(1);
      await this.setBlockMap(inode, toExtents([{ logical: 0, physical: run!.physical, length: 1 }]));
      inode.blocks += bs / 512;
      const block = new Uint8Array(bs);
      block.set(bytes);
      await this.vol.io.writeData(run!.physical * bs, block);
    }
    await this.addEntry(parent, name, inode);
  }

  /** A device node or fifo at `rel`. */
  async mknod(rel: string, attrs: NodeAttrs, kind: SpecialKind, major = 0, minor = 0): Promise<void> {
    const { parent, name } = await this.creating(rel);
    const type = kind === 'fifo' ? S_IFIFO : kind === 'character-device' ? S_IFCHR : S_IFBLK;
    const inode = await this.newInode(type, attrs, 1);
    if (kind !== 'fifo') inode.block = encodeDevice(major, minor);
    await this.addEntry(parent, name, inode);
  }

  /** A hard link at `rel` to the existing non-directory at `targetRel`. */
  async link(rel: string, targetRel: string): Promise<void> {
    const target = await this.lookup(targetRel);
    if (!target) throw new FsPathError('ENOENT', targetRel, 'the link target does not exist');
    if (isDir(target)) throw new FsPathError('EINVAL', targetRel, 'a directory cannot be hard-linked');
    if (target.linksCount >= LINK_MAX) throw new FsPathError('EINVAL', targetRel, `already has ${target.linksCount} links`);
    const { parent, name } = await this.creating(rel);
    target.linksCount++;
    this.vol.markInodeDirty(target);
    await this.addEntry(parent, name, target);
  }

  /**
   * New metadata for the existing node at `rel` (its type stays): permission bits, owner, times,
   * and the given xattrs set over those it has.
   */
  async setAttrs(rel: string, attrs: NodeAttrs): Promise<void> {
    const inode = await this.lookup(rel);
    if (!inode) throw new FsPathError('ENOENT', rel, 'does not exist');
    inode.mode = (inode.mode & S_IFMT) | (attrs.mode & 0o7777);
    Object.assign(inode, { uid: attrs.uid, gid: attrs.gid, atime: attrs.atime, mtime: attrs.mtime, ctime: attrs.mtime });
    if (attrs.xattrs.size > 0) {
      const merged = await this.xattrsOf(inode);
      for (const [k, v] of attrs.xattrs) merged.set(k, v);
      await this.putXattrs(inode, merged);
    }
    this.vol.markInodeDirty(inode);
  }

  /** Removes `rel`, a whole tree when it is a directory; nothing when it does not exist. */
  async remove(rel: string): Promise<void> {
    const { parent: parentRel, name } = this.split(rel);
    let parent: DirState;
    try {
      parent = await this.dirAt(parentRel);
    } catch (err) {
      if (err instanceof FsPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return;
      throw err;
    }
    const found = parent.get(name);
    if (!found) return;
    await this.unlinkFrom(parent, name, await this.inode(found.ino));
  }

  private async unlinkFrom(parent: DirState, name: Uint8Array, inode: Inode): Promise<void> {
    if (isDir(inode)) {
      const dir = await this.dirState(inode);
      for (const child of dir.children()) await this.unlinkFrom(dir, child.name, await this.inode(child.ino));
      this.dirs.delete(inode.ino);
      this.dirPaths.clear();
      this.dirPaths.set('', ROOT_INO);
      const p = parent.inode;
      if (p.linksCount > 2) { p.linksCount--; this.vol.markInodeDirty(p); }
    }
    parent.remove(name);
    inode.linksCount = isDir(inode) ? 0 : inode.linksCount - 1;
    if (inode.linksCount > 0) { this.vol.markInodeDirty(inode); return; }
    await this.freeInode(inode);
  }

  private async freeInode(inode: Inode): Promise<void> {
    const hasBlocks = (inode.flags & INODE_FLAGS.extents) !== 0 && inode.block[0] === 0x0a && inode.block[1] === 0xf3;
    if (hasBlocks) {
      const map = await readExtentMap(this.vol.io, this.vol.sb, inode.ino, inode.generation, inode.block, this.name);
      for (const e of map.extents) await this.alloc.freeBlocks(e.physical, e.length);
      for (const b of map.treeBlocks) await this.alloc.freeBlocks(b, 1);
    } else if (inode.blocks - (inode.fileAcl !== 0 ? this.vol.blockSize / 512 : 0) > 0 && (inode.mode & S_IFMT) !== S_IFLNK) {
      throw new FsPathError('EINVAL', `inode ${inode.ino}`, 'block-mapped (ext2/ext3-style) files cannot be removed by this writer');
    }
    await this.releaseXattrBlock(inode);
    await this.alloc.freeInode(inode.ino, isDir(inode));
    // A freed slot is all zeros, which e2fsck and the kernel accept as unused.
    const blank = emptyInode(inode.ino);
    blank.extraIsize = 0;
    Object.assign(inode, blank);
    delete inode.raw;
    this.vol.freeInode(inode);
  }

  /** Writes everything changed since the last flush to the disk (data first, then metadata). */
  async flush(): Promise<void> {
    this.forgetDirIndex();
    for (const d of this.dirs.values()) d.encode(this.vol.io, this.vol.sb, this.vol.csum);
    this.alloc.encode();
    await this.vol.encodeMetadata();
    await this.vol.io.flush();
  }
}

