/**
 * A sparse in-memory Disk: 64 KiB pages allocated on first write, trimmed pages dropped. Used by
 * tests (with fault injection and delays) and as the reference model for disk behaviour.
 */
import { DiskError } from '../errors.ts';
import { basicDiskCaps, type Disk, type DiskCaps, type DiskExtent } from '../io/types.ts';

const PAGE = 64 * 1024;

export type DiskOp = 'read' | 'write' | 'trim' | 'flush' | 'extents';

export interface MemoryDiskOptions {
  readOnly?: boolean;
  /** Returns an error to fail that operation with, or undefined to let it run. */
  fault?: (op: DiskOp, offset: number, length: number) => Error | undefined;
  /** Milliseconds to hold each operation before it runs (to force out-of-order completion). */
  delay?: (op: DiskOp, offset: number, length: number) => number;
  /** Report extents (default true); false makes the disk look like one without an allocation map. */
  extents?: boolean;
}

export class MemoryDisk implements Disk {
  private readonly pages = new Map<number, Uint8Array>();
  readonly writable: boolean;
  readonly caps: DiskCaps;
  /** How many flushes completed (tests check FUA and FLUSH reach the disk). */
  flushes = 0;
  closed = false;
  extents?: (offset: number, length: number) => Promise<DiskExtent[]>;

  constructor(readonly size: number, private readonly opts: MemoryDiskOptions = {}) {
    this.writable = !opts.readOnly;
    this.caps = basicDiskCaps(this.writable, opts.extents !== false);
    if (opts.extents !== false) this.extents = (offset, length) => this.allocation(offset, length);
  }

  /** A disk holding `bytes` (copied; all-zero pages stay holes), e.g. a known pattern for tests. */
  static from(bytes: Uint8Array, opts: MemoryDiskOptions = {}): MemoryDisk {
    const d = new MemoryDisk(bytes.length, opts);
    for (let at = 0; at < bytes.length; at += PAGE) {
      const page = bytes.subarray(at, at + PAGE);
      if (page.some((b) => b !== 0)) d.store(page, at);
    }
    return d;
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    await this.enter('read', offset, dst.length);
    for (let done = 0; done < dst.length;) {
      const at = offset + done;
      const page = this.pages.get(Math.floor(at / PAGE));
      const inPage = at % PAGE;
      const n = Math.min(PAGE - inPage, dst.length - done);
      if (page) dst.set(page.subarray(inPage, inPage + n), done);
      else dst.fill(0, done, done + n);
      done += n;
    }
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    await this.enter('write', offset, src.length);
    if (!this.writable) throw new DiskError('EROFS', 'memory disk is read-only');
    this.store(src, offset);
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.enter('trim', offset, length);
    if (!this.writable) throw new DiskError('EROFS', 'memory disk is read-only');
    for (let done = 0; done < length;) {
      const at = offset + done;
      const index = Math.floor(at / PAGE);
      const inPage = at % PAGE;
      const n = Math.min(PAGE - inPage, length - done);
      if (n === PAGE) this.pages.delete(index);
      else this.pages.get(index)?.fill(0, inPage, inPage + n);
      done += n;
    }
  }

  async flush(): Promise<void> {
    await this.enter('flush', 0, 0);
    this.flushes++;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Unallocated pages are holes; allocated pages are data (not checked for zeros). */
  private async allocation(offset: number, length: number): Promise<DiskExtent[]> {
    await this.enter('extents', offset, length);
    const out: DiskExtent[] = [];
    for (let at = offset; at < offset + length;) {
      const n = Math.min(PAGE - (at % PAGE), offset + length - at);
      const hole = !this.pages.has(Math.floor(at / PAGE));
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += n;
      else out.push({ offset: at, length: n, hole, zero: hole });
      at += n;
    }
    return out;
  }

  private store(src: Uint8Array, offset: number): void {
    for (let done = 0; done < src.length;) {
      const at = offset + done;
      const index = Math.floor(at / PAGE);
      const inPage = at % PAGE;
      const n = Math.min(PAGE - inPage, src.length - done);
      let page = this.pages.get(index);
      if (!page) {
        page = new Uint8Array(Math.min(PAGE, this.size - index * PAGE));
        this.pages.set(index, page);
      }
      page.set(src.subarray(done, done + n), inPage);
      done += n;
    }
  }

  private async enter(op: DiskOp, offset: number, length: number): Promise<void> {
    if (this.closed) throw new DiskError('EIO', 'memory disk is closed');
    if (offset < 0 || offset + length > this.size) {
      throw new DiskError(op === 'read' ? 'EINVAL' : 'ENOSPC', `${op} at ${offset}+${length} beyond ${this.size}`);
    }
    const ms = this.opts.delay?.(op, offset, length) ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    const err = this.opts.fault?.(op, offset, length);
    if (err) throw err;
  }
}
