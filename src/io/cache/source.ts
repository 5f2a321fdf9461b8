/**
 * One cached blob as a ByteSource: a sparse local data file (offsets = blob offsets) plus a
 * presence bitmap per page (a fraction of the refill unit). Hits are one pread; a miss fetches
 * the missing pages of one refill unit's window from the upstream ByteSource: the unit holding
 * the read, or, for a small read straddling two units, one unit-sized window across the
 * boundary, so no small read costs more than one refill unit. In-flight fetches are shared per
 * page and adjacent missing pages are coalesced. It declares `prefetch`: read-ahead
 * (read-ahead.ts) and trace replay fill it without reading. One CachedSource exists per open blob;
 * readers hold CacheHandles (handle.ts) to it.
 *
 * What a read returns: for units fetched by that read (or by a fetch it joined) exactly the
 * bytes upstream returned, copied from the fetch buffer; for present units, the local file. The
 * cache does not verify partial data (a whole-blob digest cannot check a unit); only a blob
 * marked complete (after sha256 of the whole file matched the digest) is guaranteed to hold the
 * digest's bytes.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { DiskError, errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import type { ByteSource, PrefetchKind, SourceCaps } from '../types.ts';
import { AdaptiveReader } from '../adaptive-read.ts';
import { BackgroundDownload, type BackgroundDownloadOptions } from './background.ts';
import { MapWriter } from './map-writer.ts';
import type { PresenceMap } from './presence.ts';
import type { BlobStats } from './stats.ts';

export interface CachedSourceOptions {
  /** Largest single upstream request made by coalescing adjacent missing units (default 4 MiB). */
  maxCoalesceBytes?: number;
  /** Whether closing the cached source closes the upstream (default true). */
  ownsUpstream?: boolean;
}

/** What the owning BlobCache is told about a blob's life. */
export interface CacheHooks {
  inserted(src: CachedSource, bytes: number): void;
  removed(src: CachedSource, bytes: number): void;
  observeMissLatency(digest: string, seconds: number): void;
}

const CACHED_CAPS: SourceCaps = Object.freeze({ readSync: false, prefetch: true, progressive: false });

export interface BlobFiles {
  dataPath: string;
  mapPath: string;
  data: FileHandle;
  map: FileHandle;
}

interface Fetched {
  offset: number;
  bytes: Buffer;
}

export type FetchKind = 'demand' | PrefetchKind;

const noop = (): void => {};

export class CachedSource implements ByteSource {
  readonly name: string;
  readonly caps = CACHED_CAPS;
  private closed = false;
  /** Set when the last handle closes: new reads are refused, reads under way finish first. */
  private closing = false;
  private reading = 0;
  private drained: (() => void) | undefined;
  /** Bumped when cached data is discarded, so reads that raced with it retry. */
  private epoch = 0;
  private readonly inflight = new Map<number, Promise<Fetched>>();
  private readonly active = new Set<Promise<unknown>>();
  private demandWaiting = 0;
  private demandIdle: Array<() => void> = [];
  private readonly mapWriter: MapWriter;
  private readonly local: AdaptiveReader;
  private background: BackgroundDownload | undefined;
  private readonly unit: number;
  private readonly page: number;
  private readonly maxCoalescePages: number;

  constructor(
    readonly digest: string,
    readonly size: number,
    private readonly upstream: ByteSource,
    readonly map: PresenceMap,
    readonly files: BlobFiles,
    readonly stats: BlobStats,
    private readonly hooks: CacheHooks,
    private readonly opts: CachedSourceOptions = {},
  ) {
    this.name = `cache:${digest}`;
    this.unit = map.unit;
    this.page = map.page;
    this.local = new AdaptiveReader(files.data.fd, files.dataPath);
    this.mapWriter = new MapWriter(map, files.map, files.data, { digest, mapPath: files.mapPath }, (problem) => { stats.lastError = problem; });
    this.maxCoalescePages = Math.max(1, Math.floor((opts.maxCoalesceBytes ?? 4 << 20) / map.unit)) * map.pagesPerUnit;
  }

  get complete(): boolean {
    return this.map.complete;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (this.closing) throw new DiskError('EIO', `${this.digest}: read after close`);
    this.reading++;
    try {
      return await this.readOnce(dst, offset);
    } finally {
      if (--this.reading === 0) this.drained?.();
    }
  }

  private async readOnce(dst: Uint8Array, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new DiskError('EINVAL', `${this.digest}: bad read offset ${offset}`);
    const len = Math.min(dst.length, this.size - offset);
    if (len <= 0) return 0;
    if (this.map.rangePresent(offset, offset + len)) {
      const epoch = this.epoch;
      await this.pread(dst, 0, len, offset);
      if (epoch !== this.epoch) return this.readOnce(dst, offset);
      this.stats.hits++;
      this.stats.bytesFromCache += len;
      return len;
    }
    return this.readMiss(dst, offset, len);
  }

  /**
   * The byte window a demand miss fetches (its missing pages): the refill units holding the read,
   * except that a read of at most one unit straddling two units gets one unit-sized window across
   * the boundary, from the read's first page (stretched to its last page when the read is not
   * page-aligned and that is longer).
   */
  private demandWindow(offset: number, end: number): [number, number] {
    const unit = this.unit;
    const gridStart = Math.floor(offset / unit) * unit;
    const gridEnd = Math.min(this.size, Math.ceil(end / unit) * unit);
    if (gridEnd - gridStart <= unit || end - offset > unit) return [gridStart, gridEnd];
    const start = Math.floor(offset / this.page) * this.page;
    return [start, Math.min(this.size, Math.max(start + unit, Math.ceil(end / this.page) * this.page))];
  }

  private async readMiss(dst: Uint8Array, offset: number, len: number): Promise<number> {
    const started = performance.now();
    const epoch = this.epoch;
    const end = offset + len;
    const [windowStart, windowEnd] = this.demandWindow(offset, end);
    const first = windowStart / this.page;
    const waits = this.planFetches(first, Math.ceil(windowEnd / this.page) - 1, 'demand');
    this.demandWaiting++;
    let fetched: Array<Fetched | undefined>;
    try {
      fetched = await Promise.all(waits);
    } finally {
      if (--this.demandWaiting === 0) for (const wake of this.demandIdle.splice(0)) wake();
    }
    const last = Math.floor((end - 1) / this.page);
    let pos = offset;
    let fromFile = 0;
    let p = Math.floor(offset / this.page);
    while (pos < end) {
      const f = fetched[p - first];
      let segEnd: number;
      if (f) {
        segEnd = Math.min(end, f.offset + f.bytes.length);
        dst.set(f.bytes.subarray(pos - f.offset, segEnd - f.offset), pos - offset);
      } else {
        let q = p;
        while (q < last && !fetched[q + 1 - first]) q++;
        segEnd = Math.min(end, (q + 1) * this.page);
        await this.pread(dst, pos - offset, segEnd - pos, pos);
        fromFile += segEnd - pos;
      }
      pos = segEnd;
      p = Math.floor(pos / this.page);
    }
    if (fromFile > 0 && epoch !== this.epoch) return this.readOnce(dst, offset);
    const seconds = (performance.now() - started) / 1000;
    this.stats.misses++;
    this.stats.bytesFromCache += fromFile;
    this.stats.missLatency.observe(seconds);
    this.hooks.observeMissLatency(this.digest, seconds);
    return len;
  }

  /**
   * For pages first..last: undefined where present, else the fetch that will bring the page
   * (joining one in flight, or starting one per run of adjacent missing pages).
   */
  private planFetches(first: number, last: number, kind: FetchKind): Array<Promise<Fetched> | undefined> {
    const waits: Array<Promise<Fetched> | undefined> = new Array(last - first + 1);
    let p = first;
    while (p <= last) {
      if (this.map.hasPage(p)) { p++; continue; }
      const pending = this.inflight.get(p);
      if (pending) { waits[p - first] = pending; p++; continue; }
      let count = 1;
      while (p + count <= last && count < this.maxCoalescePages && !this.map.hasPage(p + count) && !this.inflight.has(p + count)) count++;
      const fetch = this.fetchRun(p, count, kind);
      for (let i = 0; i < count; i++) waits[p - first + i] = fetch;
      p += count;
    }
    return waits;
  }

  /** Fetches pages start..start+count-1 in one upstream read, stores them, marks them present. */
  fetchRun(start: number, count: number, kind: FetchKind): Promise<Fetched> {
    const offset = start * this.page;
    const len = Math.min(count * this.page, this.size - offset);
    const p = this.fetchAndStore(offset, len, start, count, kind);
    for (let i = 0; i < count; i++) this.inflight.set(start + i, p);
    const settled = p.then(noop, noop).then(() => {
      for (let i = 0; i < count; i++) if (this.inflight.get(start + i) === p) this.inflight.delete(start + i);
      this.active.delete(settled);
    });
    this.active.add(settled);
    return p;
  }

  inflightFor(page: number): Promise<unknown> | undefined {
    return this.inflight.get(page);
  }

  private async fetchAndStore(offset: number, len: number, start: number, count: number, kind: FetchKind): Promise<Fetched> {
    const epoch = this.epoch;
    const range = `bytes ${offset}-${offset + len - 1}`;
    const bytes = Buffer.allocUnsafe(len);
    this.stats.upstreamRequests++;
    if (kind === 'readahead') this.stats.readAheadRequests++;
    else if (kind === 'background') this.stats.backgroundRequests++;
    else if (kind === 'trace') this.stats.traceRequests++;
    let n: number;
    try {
      n = await this.upstream.read(bytes, offset);
    } catch (err) {
      throw this.upstreamFailure(`upstream read of ${range} failed: ${errorMessage(err)}`, err);
    }
    if (n !== len) throw this.upstreamFailure(`upstream returned ${n} bytes for ${range} (wanted ${len}); nothing cached`);
    this.stats.bytesFromUpstream += len;
    await this.store(bytes, offset, start, count, epoch);
    return { offset, bytes };
  }

  private upstreamFailure(problem: string, cause?: unknown): DiskError {
    this.stats.upstreamErrors++;
    this.stats.lastError = problem;
    return new DiskError('EIO', `blob ${this.digest}: ${problem}`, { cause });
  }

  /** Writes fetched pages to the data file; only then marks them present. Local faults only log. */
  private async store(bytes: Buffer, offset: number, start: number, count: number, epoch: number): Promise<void> {
    if (this.closed) return;
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await this.files.data.write(bytes, done, bytes.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      this.stats.lastError = `local write to ${this.files.dataPath} failed: ${errorMessage(err)}`;
      log.warn({ digest: this.digest, err: errorMessage(err) }, 'cache write failed; serving from memory, not caching');
      return;
    }
    if (epoch !== this.epoch || this.closed) return;
    const added = this.map.setPages(start, count);
    if (added > 0) {
      this.hooks.inserted(this, added);
      this.mapWriter.schedule();
    }
  }

  /** Cached bytes from the local file: synchronously while the page cache answers (a warm image). */
  private async pread(dst: Uint8Array, at: number, len: number, position: number): Promise<void> {
    const n = await this.local.read(at === 0 ? dst : dst.subarray(at), len, position);
    if (n !== len) {
      throw new DiskError('EIO', `blob ${this.digest}: cache file ${this.files.dataPath} ends at ${position + n}, expected ${this.size} bytes`);
    }
  }

  /**
   * The `prefetch` capability: fetches the missing pages of the refill units overlapping
   * [offset, offset+length) without reading them out; resolves when they are stored. A failed
   * prefetch is logged, never thrown: the demand read that needs the bytes will try again.
   */
  prefetch(offset: number, length: number, kind: PrefetchKind): Promise<void> {
    if (this.closing || length <= 0 || offset >= this.size || this.map.complete) return Promise.resolve();
    let firstPage: number;
    let lastPage: number;
    if (kind === 'trace') {
      // A trace names the bytes that will be read: its pages only, not whole refill units.
      firstPage = Math.floor(offset / this.page);
      lastPage = Math.min(this.map.pages - 1, Math.floor((Math.min(this.size, offset + length) - 1) / this.page));
    } else {
      const first = Math.floor(offset / this.unit);
      const last = Math.min(this.map.units - 1, Math.floor((Math.min(this.size, offset + length) - 1) / this.unit));
      if (this.map.allPresent(first, last)) return Promise.resolve();
      firstPage = first * this.map.pagesPerUnit;
      lastPage = Math.min(this.map.pages, (last + 1) * this.map.pagesPerUnit) - 1;
    }
    const fetches = new Set(this.planFetches(firstPage, lastPage, kind));
    fetches.delete(undefined);
    return Promise.all([...fetches].map((p) => p!.then(noop, (err) => {
      log.debug({ digest: this.digest, kind, err: errorMessage(err) }, 'prefetch failed');
    }))).then(noop);
  }

  /** Resolves once no demand read is waiting on upstream (the background download yields to them). */
  waitDemandIdle(): Promise<void> {
    if (this.demandWaiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.demandIdle.push(resolve));
  }

  /** Persists the presence map (after syncing the data it describes). */
  flush(): Promise<void> {
    return this.mapWriter.flush();
  }

  /**
   * Hashes the whole data file; on a match marks the blob complete (persisted), on a mismatch
   * discards every cached byte and throws an error naming both digests.
   */
  async verifyAndComplete(signal?: AbortSignal): Promise<void> {
    await this.flush();
    const hash = createHash('sha256');
    await pipeline(createReadStream(this.files.dataPath, { highWaterMark: 1 << 20 }), hash, { signal });
    const got = `sha256:${hash.digest('hex')}`;
    if (got === this.digest) {
      const added = this.size - this.map.presentBytes;
      this.map.markComplete();
      if (added > 0) this.hooks.inserted(this, added);
      await this.flush();
      return;
    }
    await this.discard();
    const problem = `digest mismatch for blob ${this.digest}: expected ${this.digest}, got ${got} (downloaded data discarded)`;
    this.stats.lastError = problem;
    throw new DiskError('EIO', problem);
  }

  /** Forgets every cached page and frees the file's blocks; reads then go to upstream again. */
  async discard(): Promise<void> {
    this.epoch++;
    const removed = this.map.presentBytes;
    this.map.clear();
    if (removed > 0) this.hooks.removed(this, removed);
    await this.flush();
    await this.files.data.truncate(0);
    await this.files.data.truncate(this.size);
  }

  /**
   * Fills every missing page in order, throttled to `maxBytesPerSec`, pausing while demand reads
   * wait on upstream, then verifies sha256 and marks the blob complete. One download per blob.
   */
  startBackgroundDownload(opts: BackgroundDownloadOptions = {}): BackgroundDownload {
    if (this.closing) throw new DiskError('EIO', `${this.digest}: background download after close`);
    if (this.background && !this.background.finished) return this.background;
    this.background = new BackgroundDownload(this, opts);
    return this.background;
  }

  /** Refuses new reads from now on; reads under way finish (the last handle is going). */
  beginClose(): void {
    this.closing = true;
  }

  /** True once the last handle has been closed. */
  get isClosing(): boolean {
    return this.closing;
  }

  /** Handles call shutdown through the cache; a CachedSource is not closed directly. */
  close(): Promise<void> {
    return Promise.reject(new Error(`${this.name}: close the CacheHandle, not the shared source`));
  }

  /** The real close, when the last handle goes: stops the download, drains fetches, persists. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    if (this.background) await this.background.stop();
    if (this.reading > 0) await new Promise<void>((resolve) => { this.drained = resolve; });
    while (this.active.size > 0) await Promise.all([...this.active]);
    this.mapWriter.stop();
    await this.flush();
    this.closed = true;
    await this.local.idle();
    await this.files.data.close();
    await this.files.map.close();
    if (this.opts.ownsUpstream ?? true) await this.upstream.close();
  }
}
