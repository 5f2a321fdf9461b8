/**
 * Block access for the ext4 code over a Disk. Metadata blocks (bitmaps, inode tables, directory,
 * extent and xattr blocks) go through a cache: read once, changed in memory, written back sorted
 * and coalesced at flush, so a block touched by a thousand entries of a layer is written once.
 * File data bypasses the cache: consecutive blocks are gathered into large writes, a few in
 * flight at a time, as the tar streams by.
 */
import type { Disk } from '../../io/types.ts';

/** File data is gathered into writes of up to this many bytes. */
const STAGE_BYTES = 1 << 20;
/** Data writes in flight at once: enough to keep the writable layer's batches full. */
const MAX_IN_FLIGHT = 4;

export class BlockIo {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  private readonly dirtySet = new Set<number>();
  private stage: Uint8Array | null = null;
  private stageOffset = 0;
  private stageLength = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly spare: Uint8Array[] = [];
  private failed: unknown = null;

  constructor(readonly disk: Disk, readonly blockSize: number) {}

  /** Reads `count` blocks from `block` without caching (file data). */
  async readBlocks(block: number, count: number, dst = new Uint8Array(count * this.blockSize)): Promise<Uint8Array> {
    await this.disk.read(dst.subarray(0, count * this.blockSize), block * this.blockSize);
    return dst;
  }

  /** A metadata block, cached; changes to the returned bytes are kept once markDirty() is called. */
  meta(block: number): Promise<Uint8Array> {
    const hit = this.cache.get(block);
    if (hit) return Promise.resolve(hit);
    let p = this.loading.get(block);
    if (!p) {
      p = this.readBlocks(block, 1).then((buf) => {
        this.loading.delete(block);
        // A fresh() of the same block while this read was in flight wins: it is newer.
        const now = this.cache.get(block);
        if (now) return now;
        this.cache.set(block, buf);
        return buf;
      }, (err: unknown) => { this.loading.delete(block); throw err; });
      this.loading.set(block, p);
    }
    return p;
  }

  /** A newly allocated metadata block: zeros, cached and dirty, never read from the disk. */
  fresh(block: number): Uint8Array {
    const buf = new Uint8Array(this.blockSize);
    this.cache.set(block, buf);
    this.dirtySet.add(block);
    return buf;
  }

  markDirty(block: number): void {
    if (!this.cache.has(block)) throw new Error(`ext4: block ${block} marked dirty but not cached`);
    this.dirtySet.add(block);
  }

  /** A freed metadata block: its cached bytes must never be written over whatever reuses it. */
  forget(block: number): void {
    this.cache.delete(block);
    this.dirtySet.delete(block);
  }

  /** Queues file data at a block-aligned disk byte offset; consecutive calls are gathered. */
  async writeData(offset: number, bytes: Uint8Array): Promise<void> {
    if (this.failed) throw this.failed;
    let at = 0;
    while (at < bytes.length) {
      if (this.stage && (this.stageOffset + this.stageLength !== offset + at || this.stageLength === STAGE_BYTES)) await this.issueStage();
      if (!this.stage) {
        this.stage = this.spare.pop() ?? new Uint8Array(STAGE_BYTES);
        this.stageOffset = offset + at;
        this.stageLength = 0;
      }
      const n = Math.min(bytes.length - at, STAGE_BYTES - this.stageLength);
      this.stage.set(bytes.subarray(at, at + n), this.stageLength);
      this.stageLength += n;
      at += n;
    }
  }

  private async issueStage(): Promise<void> {
    const buf = this.stage!;
    const offset = this.stageOffset;
    const length = this.stageLength;
    this.stage = null;
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
    if (this.failed) throw this.failed;
    const p: Promise<void> = this.disk.write(buf.subarray(0, length), offset).then(
      () => { this.inFlight.delete(p); this.spare.push(buf); },
      (err: unknown) => { this.inFlight.delete(p); this.failed ??= err; },
    );
    this.inFlight.add(p);
  }

  /** Waits for every queued data write; rethrows the first failure. */
  async drainData(): Promise<void> {
    if (this.stage && this.stageLength > 0) await this.issueStage();
    this.stage = null;
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failed) throw this.failed;
  }

  /** Writes every dirty metadata block (after the data), adjacent blocks in one write. */
  async flush(): Promise<void> {
    await this.drainData();
    const blocks = [...this.dirtySet].sort((a, b) => a - b);
    const bs = this.blockSize;
    for (let i = 0; i < blocks.length;) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1 && j - i < 256) j++;
      const run = new Uint8Array((j - i) * bs);
      for (let k = i; k < j; k++) run.set(this.cache.get(blocks[k]!)!, (k - i) * bs);
      await this.disk.write(run, blocks[i]! * bs);
      i = j;
    }
    this.dirtySet.clear();
  }

  /** Drops clean cached blocks (bounds a long reader's memory). */
  trimCache(maxBlocks: number): void {
    if (this.cache.size <= maxBlocks) return;
    for (const block of this.cache.keys()) {
      if (this.cache.size <= maxBlocks / 2) break;
      if (!this.dirtySet.has(block)) this.cache.delete(block);
    }
  }
}
