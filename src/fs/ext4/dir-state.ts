/**
 * A directory being changed by the writer: its blocks parsed once, a name index for lookups, and
 * entries added first-fit into the blocks (a new block when none has room) and removed in place.
 * Changed blocks are packed back with their checksum tails at flush. A directory an htree index
 * was built for (by the kernel, in a layer below) becomes a linear one on its first change: the
 * index blocks turn into empty leaf blocks and the index flag is cleared, which every reader and
 * e2fsck accept, rather than keeping an index this writer does not maintain.
 */
import { FormatError } from '../../errors.ts';
import type { BlockIo } from './block-io.ts';
import { DIRENT_TAIL, parseDirBlock, recLenFor, writeDirBlock, type DirEntry } from './directory.ts';
import type { Extent } from './extents.ts';
import type { Inode } from './inode.ts';
import { INODE_FLAGS, inodeSeed, type Superblock } from './layout.ts';

export interface DirBlock { physical: number; entries: DirEntry[]; used: number }
export interface NamedEntry { ino: number; fileType: number; block: number }

/** A name's key in the index: its bytes as latin1, so any byte string maps one to one. */
export function nameKey(name: Uint8Array): string {
  return Buffer.from(name.buffer, name.byteOffset, name.length).toString('latin1');
}

const DOT = nameKey(Buffer.from('.'));
const DOTDOT = nameKey(Buffer.from('..'));

export class DirState {
  readonly blocks: DirBlock[] = [];
  private readonly names = new Map<string, NamedEntry>();
  private readonly dirty = new Set<number>();
  /** Blocks with room, to spare a scan of every block per insert in big directories. */
  private firstWithRoom = 0;

  private constructor(readonly inode: Inode, private readonly capacity: number) {}

  static async load(io: BlockIo, sb: Superblock, inode: Inode, map: Extent[], name: string, csum: boolean): Promise<DirState> {
    const bs = sb.blockSize;
    const dir = new DirState(inode, csum ? bs - DIRENT_TAIL : bs);
    const indexed = (inode.flags & INODE_FLAGS.index) !== 0;
    const seed = csum && !indexed ? inodeSeed(sb, inode.ino, inode.generation) : undefined;
    const count = Math.ceil(inode.size / bs);
    let expect = 0;
    for (const e of map) {
      if (e.logical !== expect || e.uninit) throw new FormatError(name, 0, `directory inode ${inode.ino} has a hole or an uninitialised extent at block ${expect}`);
      for (let i = 0; i < e.length && expect < count; i++, expect++) {
        const physical = e.physical + i;
        const entries = parseDirBlock(await io.meta(physical), bs, name, physical * bs, seed);
        dir.addLoaded(physical, entries);
      }
    }
    if (expect < count) throw new FormatError(name, 0, `directory inode ${inode.ino} maps ${expect} of its ${count} blocks`);
    if (indexed) {
      inode.flags &= ~INODE_FLAGS.index;
      dir.blocks.forEach((_, i) => dir.dirty.add(i));
    }
    return dir;
  }

  /** A directory made by the writer: "." and ".." in its first block. */
  static create(inode: Inode, parent: number, physical: number, bs: number, csum: boolean, ft: number): DirState {
    const dir = new DirState(inode, csum ? bs - DIRENT_TAIL : bs);
    dir.addLoaded(physical, []);
    dir.insert(Buffer.from('.'), inode.ino, ft);
    dir.insert(Buffer.from('..'), parent, ft);
    return dir;
  }

  private addLoaded(physical: number, entries: DirEntry[]): void {
    const index = this.blocks.length;
    let used = 0;
    for (const e of entries) {
      used += recLenFor(e.name.length);
      this.names.set(nameKey(e.name), { ino: e.ino, fileType: e.fileType, block: index });
    }
    this.blocks.push({ physical, entries, used });
  }

  get(name: Uint8Array): NamedEntry | undefined {
    return this.names.get(nameKey(name));
  }

  /** The names of the directory's children (not "." or ".."), in directory order. */
  children(): Array<{ name: Uint8Array; ino: number; fileType: number }> {
    const out = [];
    for (const b of this.blocks) {
      for (const e of b.entries) {
        const key = nameKey(e.name);
        if (key !== DOT && key !== DOTDOT) out.push(e);
      }
    }
    return out;
  }

  /** Adds the entry to the first block with room; false when none has (add a block, then retry). */
  insert(name: Uint8Array, ino: number, fileType: number): boolean {
    const need = recLenFor(name.length);
    for (let i = this.firstWithRoom; i < this.blocks.length; i++) {
      const b = this.blocks[i]!;
      if (this.capacity - b.used < need) {
        if (i === this.firstWithRoom && this.capacity - b.used < recLenFor(1)) this.firstWithRoom = i + 1;
        continue;
      }
      const entry = { ino, name: Uint8Array.from(name), fileType };
      b.entries.push(entry);
      b.used += need;
      this.names.set(nameKey(name), { ino, fileType, block: i });
      this.dirty.add(i);
      return true;
    }
    return false;
  }

  addBlock(physical: number): void {
    this.dirty.add(this.blocks.length);
    this.addLoaded(physical, []);
  }

  remove(name: Uint8Array): NamedEntry | undefined {
    const key = nameKey(name);
    const found = this.names.get(key);
    if (!found) return undefined;
    const b = this.blocks[found.block]!;
    const at = b.entries.findIndex((e) => nameKey(e.name) === key);
    b.entries.splice(at, 1);
    b.used -= recLenFor(name.length);
    this.names.delete(key);
    this.dirty.add(found.block);
    if (found.block < this.firstWithRoom) this.firstWithRoom = found.block;
    return found;
  }

  /** Packs the changed blocks into the cache. */
  encode(io: BlockIo, sb: Superblock, csum: boolean): void {
    const seed = csum ? inodeSeed(sb, this.inode.ino, this.inode.generation) : undefined;
    for (const i of this.dirty) {
      const b = this.blocks[i]!;
      writeDirBlock(io.fresh(b.physical), sb.blockSize, b.entries, seed);
    }
    this.dirty.clear();
  }
}
