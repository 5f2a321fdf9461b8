/**
 * Block and inode allocation, deterministic by construction: always the lowest free inode and the
 * lowest free blocks (first fit), found from cursors that only move back when something below
 * them is freed. What a layer allocates thus depends only on the bitmaps the lower layers left and
 * on the order of the layer's own operations, never on time, threads or the machine.
 * Bitmaps are loaded per group on first use (computed for never-initialised groups) and written
 * back with their checksums, and the group and superblock counters kept exact, at flush.
 */
import { FsPathError } from './reader.ts';
import { countUsed, groupSpan, initialBlockBitmap, initialInodeBitmap } from './geometry.ts';
import { BG_FLAGS, bitmapCsum } from './layout.ts';
import type { Ext4Volume } from './volume.ts';

export interface BlockRun { physical: number; length: number }

function testBit(b: Uint8Array, i: number): boolean { return ((b[i >> 3]! >> (i & 7)) & 1) === 1; }
function setBit(b: Uint8Array, i: number): void { b[i >> 3]! |= 1 << (i & 7); }
function clearBit(b: Uint8Array, i: number): void { b[i >> 3]! &= ~(1 << (i & 7)); }

export class Allocator {
  private readonly blockBitmaps = new Map<number, Uint8Array>();
  private readonly inodeBitmaps = new Map<number, Uint8Array>();
  private readonly dirtyBlockGroups = new Set<number>();
  private readonly dirtyInodeGroups = new Set<number>();
  /** No free block below this one. */
  private blockCursor = 0;
  /** No free inode below this one. */
  private inodeCursor = 1;

  constructor(private readonly vol: Ext4Volume) {}

  private async blockBitmap(g: number): Promise<Uint8Array> {
    let bm = this.blockBitmaps.get(g);
    if (bm) return bm;
    const gd = this.vol.groups[g]!;
    if ((gd.flags & BG_FLAGS.blockUninit) !== 0) bm = initialBlockBitmap(this.vol.sb, g, gd);
    else bm = (await this.vol.io.meta(gd.blockBitmap)).slice();
    this.blockBitmaps.set(g, bm);
    return bm;
  }

  private async inodeBitmap(g: number): Promise<Uint8Array> {
    let bm = this.inodeBitmaps.get(g);
    if (bm) return bm;
    const gd = this.vol.groups[g]!;
    if ((gd.flags & BG_FLAGS.inodeUninit) !== 0) bm = initialInodeBitmap(this.vol.sb);
    else bm = (await this.vol.io.meta(gd.inodeBitmap)).slice();
    this.inodeBitmaps.set(g, bm);
    return bm;
  }

  /** The lowest free inode, marked used. */
  async allocInode(isDir: boolean): Promise<number> {
    const { sb, groups } = this.vol;
    for (let g = Math.floor((this.inodeCursor - 1) / sb.inodesPerGroup); g < sb.groupCount; g++) {
      const gd = groups[g]!;
      if (gd.freeInodes === 0) continue;
      const bm = await this.inodeBitmap(g);
      const from = g === Math.floor((this.inodeCursor - 1) / sb.inodesPerGroup) ? (this.inodeCursor - 1) % sb.inodesPerGroup : 0;
      for (let i = from; i < sb.inodesPerGroup; i++) {
        if ((i & 7) === 0 && bm[i >> 3] === 0xff) { i += 7; continue; }
        if (testBit(bm, i)) continue;
        const ino = g * sb.inodesPerGroup + i + 1;
        if (ino < sb.firstIno) continue;
        setBit(bm, i);
        gd.freeInodes--;
        if (isDir) gd.usedDirs++;
        gd.itableUnused = Math.min(gd.itableUnused, sb.inodesPerGroup - (i + 1));
        gd.flags &= ~BG_FLAGS.inodeUninit;
        sb.freeInodes--;
        this.dirtyInodeGroups.add(g);
        this.inodeCursor = ino + 1;
        return ino;
      }
    }
    throw new FsPathError('ENOSPC', '/', `no free inode left (${sb.inodesCount} in the file system)`);
  }

  async freeInode(ino: number, isDir: boolean): Promise<void> {
    const { sb, groups } = this.vol;
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    const i = (ino - 1) % sb.inodesPerGroup;
    const bm = await this.inodeBitmap(g);
    if (!testBit(bm, i)) throw new Error(`ext4: inode ${ino} freed twice`);
    clearBit(bm, i);
    const gd = groups[g]!;
    gd.freeInodes++;
    if (isDir) gd.usedDirs--;
    sb.freeInodes++;
    this.dirtyInodeGroups.add(g);
    if (ino < this.inodeCursor) this.inodeCursor = ino;
  }

  /**
   * `count` blocks, first fit from the lowest free block: one run when a hole that large comes
   * first, else the holes in order. Rejects with ENOSPC, allocating nothing, when they do not exist.
   */
  async allocBlocks(count: number): Promise<BlockRun[]> {
    const { sb, groups } = this.vol;
    const runs: BlockRun[] = [];
    let need = count;
    try {
      for (let g = Math.floor((this.blockCursor - sb.firstDataBlock) / sb.blocksPerGroup); g < sb.groupCount && need > 0; g++) {
        const gd = groups[g]!;
        if (gd.freeBlocks === 0) continue;
        const bm = await this.blockBitmap(g);
        const span = groupSpan(sb, g);
        let i = Math.max(0, this.blockCursor - span.start);
        while (i < span.blocks && need > 0) {
          if ((i & 7) === 0 && bm[i >> 3] === 0xff) { i += 8; continue; }
          if (testBit(bm, i)) { i++; continue; }
          let j = i;
          while (j < span.blocks && j - i < need && !testBit(bm, j)) { setBit(bm, j); j++; }
          const length = j - i;
          gd.freeBlocks -= length;
          sb.freeBlocks -= length;
          gd.flags &= ~BG_FLAGS.blockUninit;
          this.dirtyBlockGroups.add(g);
          const last = runs[runs.length - 1];
          if (last && last.physical + last.length === span.start + i) last.length += length;
          else runs.push({ physical: span.start + i, length });
          need -= length;
          i = j;
        }
      }
      if (need > 0) throw new FsPathError('ENOSPC', '/', `no space for ${count} blocks (${sb.freeBlocks + count - need} free)`);
    } catch (err) {
      for (const r of runs) await this.freeBlocks(r.physical, r.length);
      throw err;
    }
    // Scanning started at the cursor, so everything before the end of the first run is in use.
    if (runs.length > 0) this.blockCursor = runs[0]!.physical + runs[0]!.length;
    return runs;
  }

  async freeBlocks(physical: number, length: number): Promise<void> {
    const { sb, groups } = this.vol;
    for (let b = physical; b < physical + length;) {
      const g = Math.floor((b - sb.firstDataBlock) / sb.blocksPerGroup);
      const span = groupSpan(sb, g);
      const bm = await this.blockBitmap(g);
      const end = Math.min(physical + length, span.start + span.blocks);
      for (let k = b; k < end; k++) {
        if (!testBit(bm, k - span.start)) throw new Error(`ext4: block ${k} freed twice`);
        clearBit(bm, k - span.start);
        this.vol.io.forget(k);
      }
      groups[g]!.freeBlocks += end - b;
      sb.freeBlocks += end - b;
      this.dirtyBlockGroups.add(g);
      b = end;
    }
    if (physical < this.blockCursor) this.blockCursor = physical;
  }

  /** Writes the changed bitmaps into their blocks and their checksums into the descriptors. */
  encode(): void {
    const { sb, groups, io } = this.vol;
    for (const g of this.dirtyBlockGroups) {
      const bm = this.blockBitmaps.get(g)!;
      const gd = groups[g]!;
      io.fresh(gd.blockBitmap).set(bm);
      gd.blockBitmapCsum = bitmapCsum(sb, bm.subarray(0, sb.blocksPerGroup / 8));
      const free = groupSpan(sb, g).blocks - countUsed(bm, groupSpan(sb, g).blocks);
      if (free !== gd.freeBlocks) throw new Error(`ext4: group ${g} counts ${gd.freeBlocks} free blocks, its bitmap ${free}`);
    }
    for (const g of this.dirtyInodeGroups) {
      const bm = this.inodeBitmaps.get(g)!;
      const gd = groups[g]!;
      io.fresh(gd.inodeBitmap).set(bm);
      gd.inodeBitmapCsum = bitmapCsum(sb, bm.subarray(0, sb.inodesPerGroup / 8));
    }
    if (this.dirtyBlockGroups.size + this.dirtyInodeGroups.size > 0) this.vol.markGroupsDirty();
    this.dirtyBlockGroups.clear();
    this.dirtyInodeGroups.clear();
  }
}
