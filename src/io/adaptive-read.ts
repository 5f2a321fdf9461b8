/**
 * Positional reads of a local file descriptor, tuned for serving: small reads are done
 * synchronously while they keep hitting the page cache, larger ones (and every read while the
 * disk is slow) go through the libuv pool. Used by the local-file source and by the block
 * cache's data files, which are what a warm image reads.
 *
 * Why: a 4 KiB pread from the page cache costs a few microseconds, but the thread-pool round
 * trip of an async read (wake a worker, wake the loop again) costs tens, and on a loaded 2-core
 * machine far more: it halved NBD random-read IOPS. A read that blocks on the device, though,
 * would stall every connection, so a small read that takes longer than the slow-read threshold
 * (a page-cache miss) sends the reader back to async reads for a while before it tries again.
 * Large reads stay async so the copy overlaps with the loop writing earlier replies.
 *
 * A read is also slow when the thread was merely preempted during it, which on a loaded machine
 * happens a few times in 100k reads; a fixed 200 ms backoff then spent most of a busy second in
 * the thread pool. So the backoff starts short and doubles only while reads stay slow: a cold
 * file still settles on long backoffs after a handful of misses, a preemption costs ~5 ms.
 */
import { read } from 'node:fs';
import { preadSync } from './positional.ts';

/** Reads up to this many bytes may run synchronously. */
export const SYNC_READ_MAX = 64 * 1024;
export const MIN_BACKOFF_MS = 5;
export const MAX_BACKOFF_MS = 200;

export interface AdaptiveReadOptions {
  /** Never read on the calling thread (the plain thread-pool behaviour). */
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

export class AdaptiveReader {
  /** performance.now() until which small reads go async; 0 while synchronous reads are fast. */
  private asyncUntil = 0;
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

  constructor(private readonly fd: number, private readonly name: string, private readonly opts: AdaptiveReadOptions = {}) {
    this.slowReadNs = BigInt(opts.slowReadNs ?? 500_000);
    this.minBackoffMs = opts.asyncBackoffMs ?? MIN_BACKOFF_MS;
    this.maxBackoffMs = opts.asyncBackoffMs ?? MAX_BACKOFF_MS;
    this.backoffMs = this.minBackoffMs;
  }

  /** The length (ms) of the backoff the next slow synchronous read would start. */
  get nextBackoffMs(): number {
    return this.backoffMs;
  }

  /** Whether small reads are currently done synchronously. */
  get synchronous(): boolean {
    return !this.opts.asyncOnly && performance.now() >= this.asyncUntil;
  }

  /** Reads `want` bytes at `position` into `dst` from 0; resolves with the count (short only at end of file). */
  read(dst: Uint8Array, want: number, position: number): Promise<number> {
    if (want <= 0) return Promise.resolve(0);
    if (want <= SYNC_READ_MAX && this.synchronous) {
      try {
        return Promise.resolve(this.timedReadSync(dst, want, position));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.readLater(dst, want, position);
  }

  private timedReadSync(dst: Uint8Array, want: number, position: number): number {
    const t0 = process.hrtime.bigint();
    const done = preadSync(this.fd, dst, 0, want, position);
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
  private readLater(dst: Uint8Array, want: number, position: number): Promise<number> {
    this.pending++;
    return new Promise((resolve, reject) => {
      let done = 0;
      const finish = (): void => {
        if (--this.pending === 0 && this.onIdle) this.onIdle();
      };
      const step = (err: Error | null, n: number): void => {
        if (err) {
          finish();
          reject(new Error(`${this.name}: read of ${want} bytes at ${position} failed: ${err.message}`, { cause: err }));
          return;
        }
        done += n;
        if (n === 0 || done >= want) {
          finish();
          resolve(done);
          return;
        }
        read(this.fd, dst, done, want - done, position + done, step);
      };
      read(this.fd, dst, 0, want, position, step);
    });
  }

  /** Resolves once no async read is running (before the descriptor may be closed). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise<void>((res) => { this.onIdle = res; });
  }
}
