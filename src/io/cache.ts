/**
 * The persistent blob cache: a directory of sparse per-blob data files with presence maps
 * (`blobs/sha256/<hex>.data` + `.map`), a byte capacity enforced by LRU eviction of whole blobs
 * that are not open, and per-blob stats exported to Prometheus. `open()` wraps any upstream
 * ByteSource (registry blob, p2p peer) in a CachedSource shared by every open handle of the blob
 * and returns a new CacheHandle; the blob stays open until its last handle is closed.
 *
 * Access time for LRU is the map file's mtime, touched at open and at close, so it survives
 * restarts. Blobs are removed map first, data second: a crash in between leaves a data file
 * without a map, which the next open deletes.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, utimes, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { errorMessage } from '../errors.ts';
import { log } from '../util/log.ts';
import { cacheMetrics, type CacheMetrics, type CacheMetricsSource } from './cache/metrics.ts';
import { createMapFile, MAP_TEMP_SUFFIX, PresenceMap, readMapFile, readPresenceSummary, replaceMapFile } from './cache/presence.ts';
import { CacheHandle, type HandleOwner } from './cache/handle.ts';
import { CachedSource, type CacheHooks, type CachedSourceOptions } from './cache/source.ts';
import { BlobStats, type BlobStatsSnapshot } from './cache/stats.ts';
import type { ByteSource } from './types.ts';

export { CachedSource, type CachedSourceOptions } from './cache/source.ts';
export { CacheHandle } from './cache/handle.ts';
export { ReadAheadSource } from './cache/read-ahead.ts';
export type { BackgroundDownload, BackgroundDownloadOptions, BackgroundResult } from './cache/background.ts';
export type { BlobStatsSnapshot } from './cache/stats.ts';

export interface BlobCacheOptions {
  dir: string;
  /** Upper bound on cached blob bytes; closed blobs are evicted, least recently used first. */
  capacityBytes: number;
  /** Bytes per presence bit and per upstream fetch (default 256 KiB, overlaybd's refillSize). */
  refillUnit?: number;
  /** Also evict while the file system has less free space than this (default 0: off). */
  minFreeBytes?: number;
  /** Where the Prometheus metrics go: a registry, the default one when absent, none when null. */
  metricsRegistry?: Registry | null;
  /** Defaults for every opened blob. */
  sourceDefaults?: CachedSourceOptions;
}

/**
 * The cache directory by the CLI contract: `--cache-dir DIR`, else $DADI_CACHE_DIR, else a
 * per-user default ($XDG_CACHE_HOME/dadi or ~/.cache/dadi; /var/cache/dadi for root).
 */
export function resolveCacheDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return flag;
  if (env.DADI_CACHE_DIR) return env.DADI_CACHE_DIR;
  if (process.getuid?.() === 0) return '/var/cache/dadi';
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'dadi');
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** The files of one cached blob (hex = the digest's hex): data, presence map, verify table. */
export function cachePaths(dir: string, hex: string): { dataPath: string; mapPath: string; tablePath: string } {
  const base = join(dir, 'blobs', 'sha256', hex);
  return { dataPath: `${base}.data`, mapPath: `${base}.map`, tablePath: `${base}.table` };
}

interface Entry {
  digest: string;
  bytes: number;
  lastAccess: number;
  source: CachedSource | undefined;
  /** Open handles on `source`. */
  handles: number;
}

export class BlobCache implements CacheMetricsSource, HandleOwner {
  readonly refillUnit: number;
  readonly capacityBytes: number;
  usedBytes = 0;
  evictions = 0;
  private readonly entries = new Map<string, Entry>();
  private readonly stats = new Map<string, BlobStats>();
  private readonly metrics: CacheMetrics | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private evictionQueued = false;
  private closed = false;
  private readonly hooks: CacheHooks;

  private constructor(private readonly opts: BlobCacheOptions) {
    this.refillUnit = opts.refillUnit ?? 256 << 10;
    this.capacityBytes = opts.capacityBytes;
    if (!Number.isSafeInteger(this.refillUnit) || this.refillUnit < 512 || this.refillUnit > 1 << 30) {
      throw new RangeError(`cache refill unit must be 512 B..1 GiB, got ${this.refillUnit}`);
    }
    this.metrics = opts.metricsRegistry === null ? undefined : cacheMetrics(opts.metricsRegistry ?? undefined);
    this.metrics?.sources.add(this);
    this.hooks = {
      inserted: (src, bytes) => this.adjust(src.digest, bytes),
      removed: (src, bytes) => this.adjust(src.digest, -bytes),
      observeMissLatency: (digest, seconds) => this.metrics?.missLatency.observe({ blob: digest }, seconds),
    };
  }

  /** Opens (creating if needed) the cache directory and indexes the blobs already in it. */
  static async open(opts: BlobCacheOptions): Promise<BlobCache> {
    const cache = new BlobCache(opts);
    await cache.scan();
    return cache;
  }

  private blobDir(): string {
    return join(this.opts.dir, 'blobs', 'sha256');
  }

  private paths(digest: string): { dataPath: string; mapPath: string; tablePath: string } {
    const m = DIGEST.exec(digest);
    if (!m) throw new Error(`cache: not a sha256 digest: ${JSON.stringify(digest)}`);
    return cachePaths(this.opts.dir, m[1]!);
  }

  /**
   * Keeps a blob's chunk digest table member (already checked against its annotation) beside its
   * cached data, for offline checks (`dadi cache verify`). Removed with the blob.
   */
  /** The table kept by saveTable, if any (callers check it against its annotation digest). */
  async loadTable(digest: string): Promise<Uint8Array | undefined> {
    return readFile(this.paths(digest).tablePath).catch(() => undefined);
  }

  async saveTable(digest: string, member: Uint8Array): Promise<void> {
    const { tablePath } = this.paths(digest);
    const tmp = `${tablePath}.${process.pid}.tmp`;
    await writeFile(tmp, member);
    await rename(tmp, tablePath);
  }

  private async scan(): Promise<void> {
    await mkdir(this.blobDir(), { recursive: true });
    const names = await readdir(this.blobDir());
    const maps = new Set(names.filter((n) => n.endsWith('.map')).map((n) => n.slice(0, -4)));
    for (const name of names) {
      const hex = name.replace(/\.(data|map|table)$/, '');
      const path = join(this.blobDir(), name);
      if (name.endsWith(`.map${MAP_TEMP_SUFFIX}`)) {
        await rm(path, { force: true }); // a map replacement interrupted by a crash
        continue;
      }
      if (!/^[0-9a-f]{64}$/.test(hex)) continue;
      if (name.endsWith('.data') && !maps.has(hex)) {
        log.info({ path }, 'cache: removing data file without a map (interrupted eviction)');
        await rm(path, { force: true });
        continue;
      }
      if (name.endsWith('.table') && !maps.has(hex)) {
        await rm(path, { force: true }); // the verify table of a blob evicted meanwhile
        continue;
      }
      if (!name.endsWith('.map')) continue;
      const summary = await readPresenceSummary(path);
      const st = await stat(path);
      const digest = `sha256:${hex}`;
      this.entries.set(digest, { digest, bytes: summary?.presentBytes ?? 0, lastAccess: st.mtimeMs, source: undefined, handles: 0 });
      this.usedBytes += summary?.presentBytes ?? 0;
    }
    if (this.usedBytes > this.capacityBytes) this.queueEviction();
  }

  /** Serializes opens, final closes and evictions, which change which blobs exist. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  /**
   * A cached view of blob `digest` (`size` bytes) fetching misses from `upstream`. Opening a
   * blob that is already open shares its source (and the first upstream); the extra upstream
   * is closed when `ownsUpstream` (default).
   */
  async open(digest: string, size: number, upstream: ByteSource, opts: CachedSourceOptions = {}): Promise<CacheHandle> {
    const { dataPath, mapPath } = this.paths(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`cache: bad blob size ${size} for ${digest}`);
    if (upstream.size !== size) {
      throw new Error(`cache: upstream ${upstream.name ?? ''} of ${digest} has ${upstream.size} bytes, expected ${size}`);
    }
    const o = { ...this.opts.sourceDefaults, ...opts };
    return this.locked(async () => {
      if (this.closed) throw new Error('cache: open after close');
      const existing = this.entries.get(digest);
      if (existing?.source?.isClosing) {
        // Its last handle was just closed and the release is queued behind us: finish it here.
        await existing.source.shutdown();
        existing.source = undefined;
      }
      if (existing?.source) {
        if (existing.source.size !== size) throw new Error(`cache: ${digest} is open with size ${existing.source.size}, not ${size}`);
        if (o.ownsUpstream ?? true) await upstream.close();
        return this.handle(existing.source);
      }
      const stored = await readMapFile(mapPath, size, this.refillUnit);
      let map = stored && PresenceMap.decode(stored, size, this.refillUnit);
      const data = await open(dataPath, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
      let mapFh;
      try {
        if (map && (await data.stat()).size !== size) map = undefined;
        if (!map) {
          map = new PresenceMap(size, this.refillUnit);
          await data.truncate(0);
          await data.truncate(size);
        }
        const encoded = map.encode();
        if (stored?.equals(encoded)) {
          // The file already says exactly this (the usual reopen): nothing to write or sync.
          mapFh = await open(mapPath, 'r+');
        } else if (!stored) {
          mapFh = await createMapFile(mapPath, encoded);
        } else {
          // Bits move (an old format, another size): replaced durably, old or new after a crash.
          mapFh = await replaceMapFile(mapPath, data, encoded);
        }
      } catch (err) {
        await data.close();
        await mapFh?.close();
        throw err;
      }
      const stats = this.statsFor(digest);
      const src = new CachedSource(digest, size, upstream, map, { dataPath, mapPath, data, map: mapFh }, stats, this.hooks, o);
      const before = existing?.bytes ?? 0;
      this.usedBytes += map.presentBytes - before;
      this.entries.set(digest, { digest, bytes: map.presentBytes, lastAccess: Date.now(), source: src, handles: 0 });
      await touch(mapPath);
      return this.handle(src);
    });
  }

  private statsFor(digest: string): BlobStats {
    let s = this.stats.get(digest);
    if (!s) {
      s = new BlobStats(digest);
      this.stats.set(digest, s);
    }
    return s;
  }

  /** A new handle on an open blob (HandleOwner; CacheHandle.share). */
  handle(src: CachedSource): CacheHandle {
    const entry = this.entries.get(src.digest);
    if (entry?.source !== src || src.isClosing) throw new Error(`cache: ${src.digest} is not open`);
    entry.handles++;
    return new CacheHandle(src, this);
  }

  /** A handle was closed (HandleOwner); the last one shuts the blob down. */
  async release(src: CachedSource): Promise<void> {
    const entry = this.entries.get(src.digest);
    if (entry?.source === src && --entry.handles > 0) return;
    src.beginClose();
    await this.locked(async () => {
      await src.shutdown();
      const entry = this.entries.get(src.digest);
      if (entry?.source === src) {
        entry.source = undefined;
        entry.lastAccess = Date.now();
        await touch(src.files.mapPath);
      }
    });
    if (this.usedBytes > this.capacityBytes || this.opts.minFreeBytes) this.queueEviction();
  }

  private adjust(digest: string, delta: number): void {
    const entry = this.entries.get(digest);
    if (entry) entry.bytes += delta;
    this.usedBytes += delta;
    if (delta > 0 && (this.usedBytes > this.capacityBytes || this.opts.minFreeBytes)) this.queueEviction();
  }

  private queueEviction(): void {
    if (this.evictionQueued) return;
    this.evictionQueued = true;
    void this.locked(async () => {
      this.evictionQueued = false;
      await this.evictNow();
    }).catch((err) => log.error({ err: errorMessage(err) }, 'cache eviction failed'));
  }

  /** Evicts closed blobs, least recently used first, until under capacity and free-space floor. */
  private async evictNow(): Promise<void> {
    const candidates = [...this.entries.values()].filter((e) => !e.source).sort((a, b) => a.lastAccess - b.lastAccess);
    for (const victim of candidates) {
      if (this.usedBytes <= this.capacityBytes && !(await this.lowOnSpace())) return;
      await this.evict(victim);
    }
    if (this.usedBytes > this.capacityBytes) {
      log.warn({ used: this.usedBytes, capacity: this.capacityBytes }, 'cache over capacity; every remaining blob is open');
    }
  }

  private async lowOnSpace(): Promise<boolean> {
    const floor = this.opts.minFreeBytes ?? 0;
    if (floor <= 0) return false;
    const fs = await statfs(this.opts.dir);
    return fs.bavail * fs.bsize < floor;
  }

  private async evict(entry: Entry): Promise<void> {
    const { dataPath, mapPath, tablePath } = this.paths(entry.digest);
    await rm(mapPath, { force: true });
    await rm(dataPath, { force: true });
    await rm(tablePath, { force: true });
    this.entries.delete(entry.digest);
    this.usedBytes -= entry.bytes;
    this.evictions++;
    log.info({ digest: entry.digest, bytes: entry.bytes }, 'cache: evicted blob');
  }

  /** Blobs known to the cache, for status output and tests. */
  list(): Array<{ digest: string; bytes: number; open: boolean; lastAccess: number }> {
    return [...this.entries.values()].map((e) => ({ digest: e.digest, bytes: e.bytes, open: !!e.source, lastAccess: e.lastAccess }));
  }

  /** Counters of a blob served since this cache was opened. */
  blobStats(digest: string): BlobStatsSnapshot | undefined {
    return this.stats.get(digest)?.snapshot();
  }

  allStats(): Iterable<BlobStats> {
    return this.stats.values();
  }

  /** Waits for queued evictions (tests, orderly shutdown). */
  async settle(): Promise<void> {
    await this.locked(async () => {});
  }

  /** Closes every open blob (stopping background downloads) and detaches the metrics. */
  async close(): Promise<void> {
    const open = [...this.entries.values()].flatMap((e) => (e.source ? [e.source] : []));
    for (const src of open) {
      if (src.isClosing) continue; // its release is already queued; settle() waits for it
      const entry = this.entries.get(src.digest);
      if (entry) entry.handles = 1;
      await this.release(src);
    }
    await this.settle();
    this.closed = true;
    this.metrics?.sources.delete(this);
  }
}

async function touch(path: string): Promise<void> {
  const now = new Date();
  try {
    await utimes(path, now, now);
  } catch (err) {
    log.debug({ path, err: errorMessage(err) }, 'cache: could not update access time');
  }
}
