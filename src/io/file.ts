/**
 * A local file as a ByteSource — the one local-file source of the data path (layer files,
 * writable data and index files, OCI layout blobs). It declares `readSync`: commit gathers many
 * small pieces with synchronous preads instead of a thread-pool round trip each.
 *
 * `read` is tuned for serving: small reads are done synchronously while they keep hitting the
 * page cache, larger ones (and every read while the disk is slow) go through the libuv pool.
 * Why: a 4 KiB pread from the page cache costs a few microseconds, but the thread-pool round
 * trip of an async read (wake a worker, wake the loop again) costs tens, and on a loaded 2-core
 * machine far more: it halved NBD random-read IOPS. A read that blocks on the device, though,
 * would stall every connection, so a small read that takes longer than the slow-read threshold
 * (a page-cache miss) sends the source back to async reads for a while before it tries again.
 * Large reads stay async so the copy overlaps with the loop writing earlier replies.
 *
 * A read is also slow when the thread was merely preempted during it, which on a loaded machine
 * happens a few times in 100k reads; a fixed 200 ms backoff then spent most of a busy second in
 * the thread pool. So the backoff starts short and doubles only while reads stay slow: a cold
 * file still settles on long backoffs after a handful of misses, a preemption costs ~5 ms.
 */
import { close, fstat, open, read } from 'node:fs';
import { preadSync } from './positional.ts';
import { PLAIN_SOURCE, type ByteSource, type SourceCaps } from './types.ts';

/** Reads up to this many bytes may run synchronously. */
export const SYNC_READ_MAX = 64 * 1024;
export const MIN_BACKOFF_MS = 5;
export const MAX_BACKOFF_MS = 200;

export interface FileSourceOptions {
  /**
   * Never read on the calling thread: `read` always uses the thread pool and the source does not
   * declare `readSync` (the plain behaviour; for files that may be slow, and for comparisons).
   */
  asyncOnly?: boolean;
  /** A synchronous read slower than this (ns) is taken for a page-cache miss. Default 500 µs. */
  slowReadNs?: number;
  /**
   * After a miss, reads stay async this long (ms) before synchronous reads are tried again. Default:
   * MIN_BACKOFF_MS, doubling after each miss that follows a backoff, up to MAX_BACKOFF_MS; a fast
   * synchronous read starts the doubling over. When set, every backoff lasts exactly this long.
   */
  asyncBackoffMs?: number;
}

const SYNC_CAPS: SourceCaps = Object.freeze({ readSync: true, prefetch: false });

export class FileSource implements ByteSource {
  readonly caps: SourceCaps;
  /** performance.now() until which small reads go async; 0 while synchronous reads are fast. */
  private asyncUntil = 0;
  private closed = false;
  /** Async reads still running: the descriptor must outlive them (a reused fd would read another file). */
  private pending = 0;
  private onIdle: (() => void) | null = null;
  /** How many synchronous reads were judged slow (exposed for tests and diagnostics). */
  slowSyncReads = 0;

  /** The slow-read threshold (from the options); may be changed while open. */
  slowReadNs: bigint;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  /** How long the next backoff lasts (ms). */
  private backoffMs: number;

  private constructor(private fd: number, readonly size: number, readonly name: string, private readonly opts: FileSourceOptions) {
    this.caps = opts.asyncOnly ? PLAIN_SOURCE : SYNC_CAPS;
    this.slowReadNs = BigInt(opts.slowReadNs ?? 500_000);
    this.minBackoffMs = opts.asyncBackoffMs ?? MIN_BACKOFF_MS;
    this.maxBackoffMs = opts.asyncBackoffMs ?? MAX_BACKOFF_MS;
    this.backoffMs = this.minBackoffMs;
  }

  /** Opens `path` read-only; the size is taken once, here. */
  static async open(path: string, opts: FileSourceOptions = {}): Promise<FileSource> {
    const fd = await new Promise<number>((res, rej) => open(path, 'r', (err, f) => (err ? rej(err) : res(f))));
    try {
      const st = await new Promise<{ size: number; isDirectory(): boolean }>((res, rej) => fstat(fd, (err, s) => (err ? rej(err) : res(s))));
      if (st.isDirectory()) throw Object.assign(new Error(`${path}: is a directory, not a file`), { code: 'EISDIR' });
      return new FileSource(fd, st.size, path, opts);
    } catch (e) {
      close(fd, () => {});
      throw e;
    }
  }

  /** The length (ms) of the backoff the next slow synchronous read would start. */
  get nextBackoffMs(): number {
    return this.backoffMs;
  }

  /** Whether small reads are currently done synchronously. */
  get synchronous(): boolean {
    return !this.opts.asyncOnly && performance.now() >= this.asyncUntil;
  }

  read(dst: Uint8Array, offset: number): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`${this.name}: read after close`));
    if (!Number.isSafeInteger(offset) || offset < 0) return Promise.reject(new RangeError(`${this.name}: bad read offset ${offset}`));
    const want = this.clamp(dst.length, offset);
    if (want === 0) return Promise.resolve(0);
    if (want <= SYNC_READ_MAX && this.synchronous) {
      try {
        return Promise.resolve(this.timedReadSync(dst, want, offset));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.readLater(dst, want, offset);
  }

  /** The `readSync` capability: a plain synchronous pread (commit decides itself when to stop using it). */
  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (this.closed) throw new Error(`${this.name}: read after close`);
    return preadSync(this.fd, dst, dstOffset, this.clamp(length, position), position);
  }

  private clamp(length: number, position: number): number {
    return Math.max(0, Math.min(length, this.size - position));
  }

  private timedReadSync(dst: Uint8Array, want: number, offset: number): number {
    const t0 = process.hrtime.bigint();
    const done = preadSync(this.fd, dst, 0, want, offset);
    if (process.hrtime.bigint() - t0 >= this.slowReadNs) {
      this.slowSyncReads++;
      this.asyncUntil = performance.now() + this.backoffMs;
      this.backoffMs = Math.min(this.maxBackoffMs, 2 * this.backoffMs);
    } else {
      this.backoffMs = this.minBackoffMs;
    }
    return done;
  }

  /** Through the thread pool, with the callback API (half the cost of FileHandle's promises). */
  private readLater(dst: Uint8Array, want: number, offset: number): Promise<number> {
    this.pending++;
    return new Promise((resolve, reject) => {
      let done = 0;
      const finish = (): void => {
        if (--this.pending === 0 && this.onIdle) this.onIdle();
      };
      const step = (err: Error | null, n: number): void => {
        if (err) {
          finish();
          reject(new Error(`${this.name}: read of ${want} bytes at ${offset} failed: ${err.message}`, { cause: err }));
          return;
        }
        done += n;
        if (n === 0 || done >= want) {
          finish();
          resolve(done);
          return;
        }
        read(this.fd, dst, done, want - done, offset + done, step);
      };
      read(this.fd, dst, 0, want, offset, step);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pending > 0) await new Promise<void>((res) => { this.onIdle = res; });
    const fd = this.fd;
    this.fd = -1;
    await new Promise<void>((res, rej) => close(fd, (err) => (err ? rej(err) : res())));
  }
}
