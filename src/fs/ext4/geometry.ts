/**
 * Where ext4 puts its metadata in each block group (sparse_super backups, flex_bg groups of one,
 * no reserved GDT blocks): what mkfs lays out and what a group's block bitmap must show as used
 * when the group is first initialised (BLOCK_UNINIT).
 */
import type { Superblock } from './layout.ts';

function isPowerOf(n: number, base: number): boolean {
  let p = 1;
  while (p < n) p *= base;
  return p === n;
}

/** Whether group `g` holds a superblock backup (sparse_super: 0, 1 and powers of 3, 5, 7). */
export function groupHasSuper(g: number): boolean {
  return g <= 1 || isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

export function gdtBlocks(groupCount: number, descSize: number, blockSize: number): number {
  return Math.ceil((groupCount * descSize) / blockSize);
}

export interface GroupSpan {
  /** First block of the group. */
  start: number;
  /** Blocks in the group (the last may be short). */
  blocks: number;
  /** Superblock + descriptor copies at the group's start. */
  superBlocks: number;
}

export function groupSpan(sb: Superblock, g: number): GroupSpan {
  const start = sb.firstDataBlock + g * sb.blocksPerGroup;
  const blocks = Math.min(sb.blocksPerGroup, sb.blocksCount - start);
  const superBlocks = groupHasSuper(g) ? 1 + gdtBlocks(sb.groupCount, sb.descSize, sb.blockSize) : 0;
  return { start, blocks, superBlocks };
}

/**
 * The block bitmap of an uninitialised group: the superblock copy, descriptors, and whichever of
 * the given bitmap and inode-table blocks lie in the group, marked used; the bits past a short last
 * group's end are set too, as the kernel expects.
 */
export function initialBlockBitmap(sb: Superblock, g: number, meta: { blockBitmap: number; inodeBitmap: number; inodeTable: number }): Uint8Array {
  const bitmap = new Uint8Array(sb.blockSize);
  const span = groupSpan(sb, g);
  const set = (rel: number) => { bitmap[rel >> 3]! |= 1 << (rel & 7); };
  for (let i = 0; i < span.superBlocks; i++) set(i);
  const itableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  const own = (b: number) => b >= span.start && b < span.start + span.blocks;
  if (own(meta.blockBitmap)) set(meta.blockBitmap - span.start);
  if (own(meta.inodeBitmap)) set(meta.inodeBitmap - span.start);
  for (let i = 0; i < itableBlocks; i++) if (own(meta.inodeTable + i)) set(meta.inodeTable + i - span.start);
  for (let rel = span.blocks; rel < sb.blockSize * 8; rel++) set(rel);
  return bitmap;
}

/** An empty inode bitmap: the bits past the group's inodes are set, as the kernel and e2fsck expect. */
export function initialInodeBitmap(sb: Superblock): Uint8Array {
  const bitmap = new Uint8Array(sb.blockSize);
  for (let rel = sb.inodesPerGroup; rel < sb.blockSize * 8; rel++) bitmap[rel >> 3]! |= 1 << (rel & 7);
  return bitmap;
}

export function countUsed(bitmap: Uint8Array, bits: number): number {
  let n = 0;
  for (let i = 0; i < bits; i++) if ((bitmap[i >> 3]! >> (i & 7)) & 1) n++;
  return n;
}
