/**
 * ext4 extent trees: reading a file's block map (any depth, uninitialised extents read as holes)
 * and writing one for a list of runs: the root in the inode's 60 bytes holds up to four entries;
 * more runs go to leaf blocks (340 each at 4 KiB) under as many index levels as needed, each
 * block closed by its checksum tail.
 */
import { FormatError } from '../../errors.ts';
import type { BlockIo } from './block-io.ts';
import { ext4Crc, hasMetadataCsum, inodeSeed, type Superblock } from './layout.ts';

export const EXTENT_MAGIC = 0xf30a;
/** Longest initialised extent (ee_len above this marks an uninitialised one). */
export const MAX_EXTENT_LEN = 32768;
const HEADER = 12;
const ENTRY = 12;
const ROOT_ENTRIES = 4;

/** A run of a file: `length` blocks from logical block `logical` stored at physical block `physical`. */
export interface Extent { logical: number; physical: number; length: number; uninit: boolean }

export interface ExtentMap {
  extents: Extent[];
  /** The tree's own blocks (index and leaf), which a file's removal frees too. */
  treeBlocks: number[];
}

function header(v: DataView, at: number, name: string, where: number): { entries: number; max: number; depth: number } {
  if (v.getUint16(at, true) !== EXTENT_MAGIC) throw new FormatError(name, where, 'extent header magic 0xF30A missing');
  const entries = v.getUint16(at + 2, true);
  const max = v.getUint16(at + 4, true);
  const depth = v.getUint16(at + 6, true);
  if (entries > max || depth > 5) throw new FormatError(name, where, `extent header claims ${entries}/${max} entries at depth ${depth}`);
  return { entries, max, depth };
}

/**
 * The file's runs in logical order, reading index and leaf blocks through the cache and checking
 * their checksums (with metadata_csum; `generation` is the inode's).
 */
export async function readExtentMap(io: BlockIo, sb: Superblock, ino: number, generation: number, root: Uint8Array, name: string): Promise<ExtentMap> {
  const out: ExtentMap = { extents: [], treeBlocks: [] };
  const seed = hasMetadataCsum(sb) ? inodeSeed(sb, ino, generation) : undefined;
  const walk = async (buf: Uint8Array, at: number, where: number, expectDepth: number | null): Promise<void> => {
    const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const h = header(v, at, name, where);
    if (expectDepth !== null && h.depth !== expectDepth) throw new FormatError(name, where, `inode ${ino}: extent block at depth ${h.depth}, expected ${expectDepth}`);
    if (HEADER + h.entries * ENTRY > buf.length - at) throw new FormatError(name, where, `inode ${ino}: extent entries overrun their block`);
    for (let i = 0; i < h.entries; i++) {
      const e = at + HEADER + i * ENTRY;
      if (h.depth === 0) {
        const rawLen = v.getUint16(e + 4, true);
        const physical = v.getUint16(e + 6, true) * 2 ** 32 + v.getUint32(e + 8, true);
        const uninit = rawLen > MAX_EXTENT_LEN;
        const length = uninit ? rawLen - MAX_EXTENT_LEN : rawLen;
        if (physical + length > sb.blocksCount) throw new FormatError(name, where, `inode ${ino}: extent beyond the end of the file system`);
        out.extents.push({ logical: v.getUint32(e, true), physical, length, uninit });
      } else {
        const child = v.getUint16(e + 8, true) * 2 ** 32 + v.getUint32(e + 4, true);
        if (child === 0 || child >= sb.blocksCount) throw new FormatError(name, where, `inode ${ino}: extent index points at block ${child}`);
        out.treeBlocks.push(child);
        const block = await io.meta(child);
        if (seed !== undefined) {
          const cv = new DataView(block.buffer, block.byteOffset, block.length);
          const tail = HEADER + cv.getUint16(4, true) * ENTRY;
          if (tail + 4 > block.length || cv.getUint32(tail, true) !== ext4Crc(seed, block.subarray(0, tail))) {
            throw new FormatError(name, child * sb.blockSize, `inode ${ino}: extent block checksum does not match its entries`);
          }
        }
        await walk(block, 0, child * sb.blockSize, h.depth - 1);
      }
    }
  };
  await walk(root, 0, 0, null);
  return out;
}

/** Whether an inode's i_block holds an extent root (magic present). */
export function hasExtentRoot(block: Uint8Array): boolean {
  return block[0] === 0x0a && block[1] === 0xf3;
}

function putHeader(v: DataView, at: number, entries: number, max: number, depth: number): void {
  v.setUint16(at, EXTENT_MAGIC, true);
  v.setUint16(at + 2, entries, true);
  v.setUint16(at + 4, max, true);
  v.setUint16(at + 6, depth, true);
  v.setUint32(at + 8, 0, true);
}

function putLeaf(v: DataView, at: number, e: Extent): void {
  v.setUint32(at, e.logical, true);
  v.setUint16(at + 4, e.uninit ? e.length + MAX_EXTENT_LEN : e.length, true);
  v.setUint16(at + 6, Math.floor(e.physical / 2 ** 32), true);
  v.setUint32(at + 8, e.physical % 2 ** 32, true);
}

function putIndex(v: DataView, at: number, logical: number, child: number): void {
  v.setUint32(at, logical, true);
  v.setUint32(at + 4, child % 2 ** 32, true);
  v.setUint16(at + 8, Math.floor(child / 2 ** 32), true);
  v.setUint16(at + 10, 0, true);
}

/** Splits runs longer than an extent may be. */
export function toExtents(runs: Array<{ logical: number; physical: number; length: number }>): Extent[] {
  const out: Extent[] = [];
  for (const r of runs) {
    for (let done = 0; done < r.length; done += MAX_EXTENT_LEN) {
      out.push({ logical: r.logical + done, physical: r.physical + done, length: Math.min(MAX_EXTENT_LEN, r.length - done), uninit: false });
    }
  }
  return out;
}

/** How many tree blocks `count` extents need below the inode root. */
export function treeBlocksFor(count: number, blockSize: number): number {
  const perBlock = (blockSize - HEADER - 4) / ENTRY | 0;
  let total = 0;
  let level = count;
  while (level > ROOT_ENTRIES) {
    level = Math.ceil(level / perBlock);
    total += level;
  }
  return total;
}

/**
 * Writes the tree for `extents` (logical order): the root into a new 60-byte i_block (returned),
 * blocks from `treeBlocks` (exactly treeBlocksFor(extents.length) of them) as fresh cached blocks.
 */
export function writeExtentTree(io: BlockIo, sb: Superblock, ino: number, generation: number, extents: Extent[], treeBlocks: number[]): Uint8Array {
  const bs = sb.blockSize;
  const perBlock = (bs - HEADER - 4) / ENTRY | 0;
  const seed = hasMetadataCsum(sb) ? inodeSeed(sb, ino, generation) : 0;
  let next = 0;
  // Level by level from the leaves up: each level's first logical block and its block number.
  let level: Array<{ logical: number; block: number }> | null = null;
  let depth = 0;
  let items: Extent[] | Array<{ logical: number; block: number }> = extents;
  while (items.length > ROOT_ENTRIES) {
    const parents: Array<{ logical: number; block: number }> = [];
    for (let i = 0; i < items.length; i += perBlock) {
      const block = treeBlocks[next++]!;
      const buf = io.fresh(block);
      const v = new DataView(buf.buffer, buf.byteOffset, bs);
      const slice = items.slice(i, i + perBlock);
      putHeader(v, 0, slice.length, perBlock, depth);
      slice.forEach((it, k) => {
        if (depth === 0) putLeaf(v, HEADER + k * ENTRY, it as Extent);
        else putIndex(v, HEADER + k * ENTRY, (it as { logical: number }).logical, (it as { block: number }).block);
      });
      const tail = HEADER + perBlock * ENTRY;
      if (hasMetadataCsum(sb)) v.setUint32(tail, ext4Crc(seed, buf.subarray(0, tail)), true);
      parents.push({ logical: slice[0]!.logical, block });
    }
    level = parents;
    items = parents;
    depth++;
  }
  if (next !== treeBlocks.length) throw new Error(`ext4: extent tree used ${next} of ${treeBlocks.length} blocks`);
  const root = new Uint8Array(60);
  const v = new DataView(root.buffer);
  putHeader(v, 0, items.length, ROOT_ENTRIES, depth);
  items.forEach((it, k) => {
    if (level === null) putLeaf(v, HEADER + k * ENTRY, it as Extent);
    else putIndex(v, HEADER + k * ENTRY, it.logical, (it as { block: number }).block);
  });
  return root;
}
