/**
 * A local file as a ByteSource — the one local-file source of the data path (layer files,
 * writable data and index files, OCI layout blobs). It declares `readSync`: commit gathers many
 * small pieces with synchronous preads instead of a thread-pool round trip each. `read` is the
 * adaptive policy of adaptive-read.ts: synchronous while the page cache answers, else the pool.
 */
import { close, fstat, open } from 'node:fs';
import { AdaptiveReader, type AdaptiveReadOptions } from './adaptive-read.ts';
import { preadSync } from './positional.ts';
import { PLAIN_SOURCE, type ByteSource, type SourceCaps } from './types.ts';

export { MAX_BACKOFF_MS, MIN_BACKOFF_MS, SYNC_READ_MAX } from './adaptive-read.ts';
export type FileSourceOptions = AdaptiveReadOptions;

const SYNC_CAPS: SourceCaps = Object.freeze({ readSync: true, prefetch: false, progressive: false });

export class FileSource implements ByteSource {
  readonly caps: SourceCaps;
  private closed = false;
  private readonly reader: AdaptiveReader;

  private constructor(private fd: number, readonly size: number, readonly name: string, opts: FileSourceOptions) {
    this.caps = opts.asyncOnly ? PLAIN_SOURCE : SYNC_CAPS;
    this.reader = new AdaptiveReader(fd, name, opts);
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

  /** How many synchronous reads were judged slow (for tests and diagnostics). */
  get slowSyncReads(): number { return this.reader.slowSyncReads; }
  /** The slow-read threshold; may be changed while open. */
  get slowReadNs(): bigint { return this.reader.slowReadNs; }
  set slowReadNs(ns: bigint) { this.reader.slowReadNs = ns; }
  /** The length (ms) of the backoff the next slow synchronous read would start. */
  get nextBackoffMs(): number { return this.reader.nextBackoffMs; }
  /** Whether small reads are currently done synchronously. */
  get synchronous(): boolean { return this.reader.synchronous; }

  read(dst: Uint8Array, offset: number): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`${this.name}: read after close`));
    if (!Number.isSafeInteger(offset) || offset < 0) return Promise.reject(new RangeError(`${this.name}: bad read offset ${offset}`));
    return this.reader.read(dst, this.clamp(dst.length, offset), offset);
  }

  /** The `readSync` capability: a plain synchronous pread (commit decides itself when to stop using it). */
  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (this.closed) throw new Error(`${this.name}: read after close`);
    return preadSync(this.fd, dst, dstOffset, this.clamp(length, position), position);
  }

  private clamp(length: number, position: number): number {
    return Math.max(0, Math.min(length, this.size - position));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reader.idle();
    const fd = this.fd;
    this.fd = -1;
    await new Promise<void>((res, rej) => close(fd, (err) => (err ? rej(err) : res())));
  }
}
