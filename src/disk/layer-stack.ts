/**
 * A stack of read-only layers, with an optional writable layer on top, as one `Disk`
 * (formats.md §2.11). Reads resolve each sector through the writable layer's live map first,
 * then the merged index of the read-only layers (the "combo" index); holes and zeroed extents
 * read as zeros. Only the writable layer is ever written.
 *
 * Reads plan synchronously (index walks through pre-bound visitors writing into instance fields,
 * so no closure or array per call), start every source read, then await them. Planning never
 * awaits, so concurrent reads cannot see each other's planning state.
 */
import { DiskError, errorMessage, FormatError } from '../errors.ts';
import type { ReadOnlyLayer, WritableLayer } from '../format/lsmt/types.ts';
import { MAX_STACK_LAYERS, SECTOR } from '../format/lsmt/types.ts';
import type { ByteSource, Disk, DiskCaps, DiskExtent } from '../io/types.ts';
import { MergedIndex } from './merged-index.ts';
import { RangeLock } from './range-lock.ts';

export interface LayerStackOptions {
  /** Read-only layers, bottom-first (the order of a config's `lowers`). */
  lowers: readonly ReadOnlyLayer[];
  upper?: WritableLayer;
  /** Overrides the size taken from the layers. */
  size?: number;
}

const HOLE = 0;
const ZERO = 1;
const DATA = 2;
type RunKind = typeof HOLE | typeof ZERO | typeof DATA;

/** What a planning walk does with the runs it finds. */
const MODE_READ = 0;
const MODE_EXTENTS = 1;

/** extents() stops adding runs past this many (and returns a prefix of the range). */
export const MAX_EXTENT_RUNS = 16384;
/** extents() walks the range in windows of this many sectors, so it can stop early. */
const EXTENT_WINDOW = 16384;

async function readExtent(src: ByteSource, label: string, dst: Uint8Array, byteOffset: number): Promise<DiskError | undefined> {
  try {
    const n = await src.read(dst, byteOffset);
    if (n === dst.length) return undefined;
    return new DiskError('EIO', `${label}: short read at byte ${byteOffset}: wanted ${dst.length} bytes, the source gave ${n}`);
  } catch (err) {
    // A format error already names the file, the offset and the problem: say only what was being read.
    if (err instanceof FormatError && label.includes(err.file)) {
      return new DiskError('EIO', `${errorMessage(err)} (while reading ${dst.length} bytes of layer data at byte ${byteOffset})`, { cause: err });
    }
    return new DiskError('EIO', `${label}: read of ${dst.length} bytes at byte ${byteOffset} failed: ${errorMessage(err)}`, { cause: err });
  }
}

function describe(name: string, src: ByteSource): string {
  return src.name && !name.startsWith(src.name) ? `layer ${name} (${src.name})` : `layer ${name}`;
}

export class LayerStack implements Disk {
  readonly size: number;
  readonly writable: boolean;
  readonly caps: DiskCaps;
  readonly index: MergedIndex;
  /** Data source and error label of each read-only layer, by tag (0 = top). */
  private readonly sources: ByteSource[];
  private readonly labels: string[];
  private readonly upperLabel: string;
  private readonly lock = new RangeLock();
  private readonly edgePool: Uint8Array[] = [];
  private closed = false;

  // Planning state: valid only during one synchronous walk.
  private mode = MODE_READ;
  private dst: Uint8Array = new Uint8Array(0);
  private base = 0; // sector at dst[0]
  private roCursor = 0;
  private upCursor = 0;
  private runSrc: ByteSource | null = null;
  private runLabel = '';
  private runDst = 0;
  private runLen = 0;
  private runSrcOff = 0;
  private readonly reads: Promise<DiskError | undefined>[] = [];
  /** Where the walk records its allocation runs (extents(), readMapped()), or null. */
  private runs: DiskExtent[] | null = null;

  private constructor(private readonly lowers: readonly ReadOnlyLayer[], private readonly upper: WritableLayer | undefined, size: number) {
    this.index = MergedIndex.build(lowers.map((l) => l.index), lowers.map((l) => l.name));
    const n = lowers.length;
    this.sources = lowers.map((_, k) => lowers[n - 1 - k]!.data);
    this.labels = lowers.map((_, k) => describe(lowers[n - 1 - k]!.name, lowers[n - 1 - k]!.data));
    this.upperLabel = upper ? `writable layer ${upper.name}` : '';
    this.size = size;
    this.writable = upper !== undefined;
    // Writes imply trim (zeroed records), zero (trim or written zeros) and FUA (write, then flush).
    this.caps = Object.freeze({ trim: this.writable, zero: this.writable, fua: this.writable, extents: true, readMapped: true });
  }

  /**
   * Stacks the layers. The stack then owns them: close() closes them all. On failure nothing is
   * closed; the caller still owns what it passed.
   */
  static async open(opts: LayerStackOptions): Promise<LayerStack> {
    const { lowers, upper } = opts;
    if (lowers.length > MAX_STACK_LAYERS) {
      throw new DiskError('EINVAL', `a stack holds at most ${MAX_STACK_LAYERS} read-only layers; got ${lowers.length}`);
    }
    let size = opts.size;
    if (size === undefined) {
      size = upper && upper.virtualSize > 0 ? upper.virtualSize : 0;
      for (let k = lowers.length - 1; size === 0 && k >= 0; k--) size = lowers[k]!.virtualSize;
      if (size === 0) throw new DiskError('EINVAL', 'no layer of the stack gives a virtual size; pass one');
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new DiskError('EINVAL', `invalid stack size ${size}`);
    return new LayerStack(lowers, upper, size);
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    const len = dst.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + len > this.size) {
      throw new DiskError('EINVAL', `read of ${len} bytes at ${offset} is outside the disk (size ${this.size})`);
    }
    if (len === 0) return;
    const head = offset % SECTOR;
    if (head === 0 && len % SECTOR === 0) return this.readSectors(dst, offset / SECTOR);
    // Unaligned: partial edge sectors through a pooled scratch sector, the middle straight into dst.
    const end = offset + len;
    const firstFull = Math.ceil(offset / SECTOR);
    const lastFull = Math.floor(end / SECTOR);
    const jobs: Promise<void>[] = [];
    if (head !== 0) {
      const upto = Math.min(end, firstFull * SECTOR);
      jobs.push(this.readPartial(dst, 0, offset, upto - offset));
    }
    if (lastFull > firstFull) {
      const from = firstFull * SECTOR - offset;
      jobs.push(this.readSectors(dst.subarray(from, from + (lastFull - firstFull) * SECTOR), firstFull));
    }
    if (end % SECTOR !== 0 && lastFull >= firstFull) {
      const from = lastFull * SECTOR;
      jobs.push(this.readPartial(dst, from - offset, from, end - from));
    }
    // Every job must be done with dst before the caller may reuse it (a failed edge must not
    // hand back a buffer that a decode thread is still filling), so settle all, then throw.
    const settled = await Promise.allSettled(jobs);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
  }

  /** Reads [byteOffset, +len) within one sector into dst at dstAt. */
  private async readPartial(dst: Uint8Array, dstAt: number, byteOffset: number, len: number): Promise<void> {
    const scratch = this.edgePool.pop() ?? new Uint8Array(SECTOR);
    try {
      const sector = Math.floor(byteOffset / SECTOR);
      await this.readSectors(scratch, sector);
      const at = byteOffset - sector * SECTOR;
      dst.set(scratch.subarray(at, at + len), dstAt);
    } finally {
      this.edgePool.push(scratch);
    }
  }

  /** Fills dst (a whole number of sectors) from `sector` on. */
  private readSectors(dst: Uint8Array, sector: number): Promise<void> {
    this.mode = MODE_READ;
    this.dst = dst;
    this.base = sector;
    this.runSrc = null;
    this.walk(sector, dst.length / SECTOR);
    this.flushRun();
    this.dst = EMPTY;
    const reads = this.reads;
    if (reads.length === 0) return DONE;
    if (reads.length === 1) {
      const only = reads[0]!;
      reads.length = 0;
      return only.then(throwIfError);
    }
    const all = Promise.all(reads); // copies the array synchronously, so it can be reused now
    reads.length = 0;
    return all.then(throwFirstError);
  }

  /** Resolves [sector, sector+count): the writable layer's map first, gaps from the read-only stack. */
  private walk(sector: number, count: number): void {
    if (this.closed) throw new DiskError('EIO', 'the disk is closed');
    const end = sector + count;
    if (this.upper) {
      this.upCursor = sector;
      this.upper.lookup(sector, count, this.visitUpper);
      if (this.upCursor < end) this.walkLowers(this.upCursor, end - this.upCursor);
    } else {
      this.walkLowers(sector, count);
    }
  }

  private walkLowers(sector: number, count: number): void {
    this.roCursor = sector;
    this.index.lookup(sector, count, this.visitLower);
    const end = sector + count;
    if (this.roCursor < end) this.emit(HOLE, this.roCursor, end - this.roCursor, null, '', 0);
  }

  private readonly visitUpper = (offset: number, length: number, moffset: number, zeroed: boolean): void => {
    if (offset > this.upCursor) this.walkLowers(this.upCursor, offset - this.upCursor);
    this.emit(zeroed ? ZERO : DATA, offset, length, this.upper!.data, this.upperLabel, moffset);
    this.upCursor = offset + length;
  };

  private readonly visitLower = (offset: number, length: number, moffset: number, zeroed: boolean, tag: number): void => {
    if (offset > this.roCursor) this.emit(HOLE, this.roCursor, offset - this.roCursor, null, '', 0);
    if (zeroed) this.emit(ZERO, offset, length, null, '', 0);
    else this.emit(DATA, offset, length, this.sources[tag]!, this.labels[tag]!, moffset);
    this.roCursor = offset + length;
  };

  private emit(kind: RunKind, sector: number, count: number, src: ByteSource | null, label: string, moffset: number): void {
    if (this.runs !== null) {
      this.addRun(kind, sector, count);
      if (this.mode === MODE_EXTENTS) return;
    }
    const at = (sector - this.base) * SECTOR;
    const len = count * SECTOR;
    if (kind !== DATA) {
      this.dst.fill(0, at, at + len);
      return;
    }
    const srcOff = moffset * SECTOR;
    // Adjacent extents of one layer that are contiguous in the layer file become one read.
    if (this.runSrc === src && this.runDst + this.runLen === at && this.runSrcOff + this.runLen === srcOff) {
      this.runLen += len;
      return;
    }
    this.flushRun();
    this.runSrc = src;
    this.runLabel = label;
    this.runDst = at;
    this.runLen = len;
    this.runSrcOff = srcOff;
  }

  private flushRun(): void {
    const src = this.runSrc;
    if (src === null) return;
    this.runSrc = null;
    this.reads.push(readExtent(src, this.runLabel, this.dst.subarray(this.runDst, this.runDst + this.runLen), this.runSrcOff));
  }

  private addRun(kind: RunKind, sector: number, count: number): void {
    const runs = this.runs!;
    const offset = sector * SECTOR;
    const length = count * SECTOR;
    const last = runs[runs.length - 1];
    const hole = kind === HOLE;
    const zero = kind !== DATA;
    if (last && last.hole === hole && last.zero === zero && last.offset + last.length === offset) {
      last.length += length;
    } else {
      runs.push({ offset, length, hole, zero });
    }
  }

  /**
   * Allocation map of [offset, offset+length): consecutive hole / zero / data runs. A range so
   * fragmented that it needs more than MAX_EXTENT_RUNS runs gets a prefix of the map (ending on a
   * run boundary before offset+length): callers ask again from where it ends, so one request can
   * never make the server build an unbounded list.
   */
  async extents(offset: number, length: number): Promise<DiskExtent[]> {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new DiskError('EINVAL', `block status of ${length} bytes at ${offset} is outside the disk (size ${this.size})`);
    }
    if (length === 0) return [];
    const first = Math.floor(offset / SECTOR);
    const last = Math.ceil((offset + length) / SECTOR);
    const runs: DiskExtent[] = [];
    this.mode = MODE_EXTENTS;
    this.runs = runs;
    try {
      for (let at = first; at < last && runs.length < MAX_EXTENT_RUNS; at += EXTENT_WINDOW) {
        this.walk(at, Math.min(EXTENT_WINDOW, last - at));
      }
    } finally {
      this.mode = MODE_READ;
      this.runs = null;
    }
    if (runs.length > MAX_EXTENT_RUNS) runs.length = MAX_EXTENT_RUNS;
    clip(runs, offset, offset + length);
    return runs;
  }

  /**
   * Reads like read() and returns the allocation map of the same index walk, so the map describes
   * exactly the bytes read (one walk instead of extents() then read()). Sector-aligned ranges walk
   * once; others fall back to extents() then read().
   */
  async readMapped(dst: Uint8Array, offset: number): Promise<DiskExtent[]> {
    const len = dst.length;
    if (offset % SECTOR !== 0 || len % SECTOR !== 0 || len === 0 || !Number.isSafeInteger(offset) || offset < 0 || offset + len > this.size) {
      const map = await this.extents(offset, len);
      await this.read(dst, offset);
      return map;
    }
    const runs: DiskExtent[] = [];
    this.runs = runs;
    let done: Promise<void>;
    try {
      done = this.readSectors(dst, offset / SECTOR);
    } finally {
      this.runs = null;
    }
    await done;
    return runs;
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    const upper = this.requireUpper('write');
    const len = src.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + len > this.size) {
      throw new DiskError('ENOSPC', `write of ${len} bytes at ${offset} is beyond the end of the disk (size ${this.size})`);
    }
    if (len === 0) return;
    const first = Math.floor(offset / SECTOR);
    const end = Math.ceil((offset + len) / SECTOR);
    const release = await this.lock.acquire(first, end);
    try {
      if (offset % SECTOR === 0 && len % SECTOR === 0) await upper.write(src, offset);
      else await this.readModifyWrite(upper, src, offset);
    } finally {
      release();
    }
  }

  /** Writes src at an unaligned offset or length by merging it into the covering sectors. Lock held. */
  private async readModifyWrite(upper: WritableLayer, src: Uint8Array, offset: number): Promise<void> {
    const first = Math.floor(offset / SECTOR);
    const end = Math.ceil((offset + src.length) / SECTOR);
    const buf = new Uint8Array((end - first) * SECTOR);
    const edges: Promise<void>[] = [];
    if (offset % SECTOR !== 0) edges.push(this.readSectors(buf.subarray(0, SECTOR), first));
    if ((offset + src.length) % SECTOR !== 0 && (end - 1 > first || offset % SECTOR === 0)) {
      edges.push(this.readSectors(buf.subarray(buf.length - SECTOR), end - 1));
    }
    await Promise.all(edges);
    buf.set(src, offset - first * SECTOR);
    await upper.write(buf, first * SECTOR);
  }

  async trim(offset: number, length: number): Promise<void> {
    const upper = this.requireUpper('trim');
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new DiskError('EINVAL', `trim of ${length} bytes at ${offset} is outside the disk (size ${this.size})`);
    }
    if (length === 0) return;
    const end = offset + length;
    const first = Math.floor(offset / SECTOR);
    const release = await this.lock.acquire(first, Math.ceil(end / SECTOR));
    try {
      // Whole sectors are deallocated; partial edge sectors get zeros written over the range.
      const fullFrom = Math.ceil(offset / SECTOR) * SECTOR;
      const fullTo = Math.floor(end / SECTOR) * SECTOR;
      if (fullTo > fullFrom) {
        await upper.trim(fullFrom, fullTo - fullFrom);
        if (offset < fullFrom) await this.readModifyWrite(upper, new Uint8Array(fullFrom - offset), offset);
        if (end > fullTo) await this.readModifyWrite(upper, new Uint8Array(end - fullTo), fullTo);
      } else {
        await this.readModifyWrite(upper, new Uint8Array(length), offset);
      }
    } finally {
      release();
    }
  }

  async flush(): Promise<void> {
    if (this.upper) await this.upper.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const errors: unknown[] = [];
    const all: Array<{ close(): Promise<void> }> = [...this.lowers];
    if (this.upper) all.push(this.upper);
    const results = await Promise.allSettled(all.map((l) => l.close()));
    for (const r of results) if (r.status === 'rejected') errors.push(r.reason);
    if (errors.length > 0) throw new DiskError('EIO', `closing the stack: ${errors.map(errorMessage).join('; ')}`);
  }

  private requireUpper(op: string): WritableLayer {
    if (!this.upper) throw new DiskError('EROFS', `${op} refused: the disk has no writable layer`);
    if (this.closed) throw new DiskError('EIO', 'the disk is closed');
    return this.upper;
  }
}

/** Trims sector-granular runs to the byte range [offset, end): the first starts at offset, none passes end. */
function clip(runs: DiskExtent[], offset: number, end: number): void {
  const head = runs[0]!;
  head.length -= offset - head.offset;
  head.offset = offset;
  const tail = runs[runs.length - 1]!;
  if (tail.offset + tail.length > end) tail.length = end - tail.offset;
}

const EMPTY = new Uint8Array(0);
const DONE = Promise.resolve();

function throwIfError(err: DiskError | undefined): void {
  if (err) throw err;
}

function throwFirstError(results: Array<DiskError | undefined>): void {
  for (const r of results) if (r) throw r;
}
