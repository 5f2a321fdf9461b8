/**
 * An ext4 file system opened over a Disk: its superblock, group descriptors and inodes, read
 * through the block cache and, for a writer, kept in memory while they change and encoded back
 * (with their checksums) at flush. Both the reader and the writer sit on this.
 */
import { FormatError } from '../../errors.ts';
import type { Disk } from '../../io/types.ts';
import { BlockIo } from './block-io.ts';
import { decodeInode, encodeInode, type Inode } from './inode.ts';
import {
  decodeGroupDesc, decodeSuperblock, encodeGroupDesc, encodeSuperblock, groupDescCsumOk, hasMetadataCsum, INCOMPAT, READABLE_INCOMPAT,
  SUPERBLOCK_OFFSET, type GroupDesc, type Superblock,
} from './layout.ts';

export class Ext4Volume {
  private readonly inodes = new Map<number, Inode>();
  private readonly dirtyInodes = new Set<number>();
  private readonly freedInodes = new Set<number>();
  private groupsDirty = false;

  private constructor(readonly io: BlockIo, readonly sb: Superblock, readonly groups: GroupDesc[], readonly name: string) {}

  /** Opens the file system on `disk`; `name` labels errors (the image or layer files). */
  static async open(disk: Disk, name: string): Promise<Ext4Volume> {
    if (disk.size < SUPERBLOCK_OFFSET + 1024) throw new FormatError(name, 0, `a ${disk.size}-byte disk holds no ext4 file system`);
    const raw = new Uint8Array(1024);
    await disk.read(raw, SUPERBLOCK_OFFSET);
    const sb = decodeSuperblock(raw, name);
    const unknown = sb.incompat & ~READABLE_INCOMPAT;
    if (unknown !== 0) {
      const what = (sb.incompat & INCOMPAT.recover) !== 0 ? 'its journal needs recovery' : `incompatible features 0x${unknown.toString(16)} are not supported`;
      throw new FormatError(name, SUPERBLOCK_OFFSET + 0x60, `ext4: ${what}`);
    }
    if (sb.blocksCount * sb.blockSize > disk.size) {
      throw new FormatError(name, SUPERBLOCK_OFFSET + 0x4, `the file system (${sb.blocksCount} blocks of ${sb.blockSize}) is larger than the ${disk.size}-byte disk`);
    }
    const io = new BlockIo(disk, sb.blockSize);
    const perBlock = sb.blockSize / sb.descSize;
    const first = sb.firstDataBlock + 1;
    const groups: GroupDesc[] = [];
    for (let g = 0; g < sb.groupCount; g++) {
      const block = first + Math.floor(g / perBlock);
      const buf = await io.meta(block);
      const at = (g % perBlock) * sb.descSize;
      if (!groupDescCsumOk(sb, g, buf, at)) throw new FormatError(name, block * sb.blockSize + at, `group descriptor ${g}: checksum does not match`);
      const gd = decodeGroupDesc(buf, at, sb.descSize);
      for (const [what, b] of [['block bitmap', gd.blockBitmap], ['inode bitmap', gd.inodeBitmap], ['inode table', gd.inodeTable]] as const) {
        if (b === 0 || b >= sb.blocksCount) throw new FormatError(name, block * sb.blockSize + at, `group descriptor ${g}: ${what} at block ${b} is outside the file system`);
      }
      groups.push(gd);
    }
    return new Ext4Volume(io, sb, groups, name);
  }

  get blockSize(): number { return this.sb.blockSize; }
  get csum(): boolean { return hasMetadataCsum(this.sb); }

  private locate(ino: number): { block: number; at: number } {
    const { sb } = this;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) throw new FormatError(this.name, 0, `inode number ${ino} is outside 1..${sb.inodesCount}`);
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const byte = index * sb.inodeSize;
    return { block: this.groups[group]!.inodeTable + Math.floor(byte / sb.blockSize), at: byte % sb.blockSize };
  }

  /** The inode, decoded once and then shared: a writer changes it in place and calls markInodeDirty. */
  async inode(ino: number): Promise<Inode> {
    const hit = this.inodes.get(ino);
    if (hit) return hit;
    const { block, at } = this.locate(ino);
    const buf = await this.io.meta(block);
    const again = this.inodes.get(ino);
    if (again) return again;
    const inode = decodeInode(this.sb, ino, buf.subarray(at, at + this.sb.inodeSize), this.name, block * this.sb.blockSize + at);
    this.inodes.set(ino, inode);
    return inode;
  }

  /** Installs a new inode object for `ino` (allocation), dirty. */
  setInode(inode: Inode): void {
    this.inodes.set(inode.ino, inode);
    this.dirtyInodes.add(inode.ino);
    this.freedInodes.delete(inode.ino);
  }

  /** A freed inode: its slot is written as zeros. */
  freeInode(inode: Inode): void {
    this.dirtyInodes.add(inode.ino);
    this.freedInodes.add(inode.ino);
  }

  markInodeDirty(inode: Inode): void {
    this.dirtyInodes.add(inode.ino);
  }

  markGroupsDirty(): void {
    this.groupsDirty = true;
  }

  /** Encodes dirty inodes, group descriptors and the superblock into their cached blocks. */
  async encodeMetadata(): Promise<void> {
    const { sb } = this;
    for (const ino of [...this.dirtyInodes].sort((a, b) => a - b)) {
      const { block, at } = this.locate(ino);
      const buf = await this.io.meta(block);
      const slot = buf.subarray(at, at + sb.inodeSize);
      if (this.freedInodes.has(ino)) slot.fill(0);
      else encodeInode(sb, this.inodes.get(ino)!, slot);
      this.io.markDirty(block);
    }
    this.dirtyInodes.clear();
    this.freedInodes.clear();
    if (!this.groupsDirty) return;
    const perBlock = sb.blockSize / sb.descSize;
    for (let g = 0; g < sb.groupCount; g++) {
      const block = sb.firstDataBlock + 1 + Math.floor(g / perBlock);
      const buf = await this.io.meta(block);
      encodeGroupDesc(sb, g, this.groups[g]!, buf, (g % perBlock) * sb.descSize);
      this.io.markDirty(block);
    }
    const sbBlock = Math.floor(SUPERBLOCK_OFFSET / sb.blockSize);
    const buf = await this.io.meta(sbBlock);
    buf.set(encodeSuperblock(sb), SUPERBLOCK_OFFSET % sb.blockSize);
    this.io.markDirty(sbBlock);
    this.groupsDirty = false;
  }
}
