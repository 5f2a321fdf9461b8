/**
 * One reader's handle on a cached blob. Every BlobCache.open gives a new handle; the blob's
 * shared CachedSource lives while any handle is open, so nobody counts references by hand:
 * whoever opened a handle closes it, once.
 */
import { DiskError } from '../../errors.ts';
import { SourceFilter } from '../filter.ts';
import type { BackgroundDownload, BackgroundDownloadOptions } from './background.ts';
import type { PresenceMap } from './presence.ts';
import type { BlobFiles, CachedSource } from './source.ts';
import type { BlobStats } from './stats.ts';

/** Who hands out and takes back handles (the BlobCache). */
export interface HandleOwner {
  handle(blob: CachedSource): CacheHandle;
  release(blob: CachedSource): Promise<void>;
}

export class CacheHandle extends SourceFilter {
  private released = false;

  constructor(readonly blob: CachedSource, private readonly owner: HandleOwner) {
    super(blob);
  }

  get digest(): string { return this.blob.digest; }
  /** Every byte is cached and the blob's sha256 matched: reads no longer touch the upstream. */
  get complete(): boolean { return this.blob.complete; }
  get map(): PresenceMap { return this.blob.map; }
  get files(): BlobFiles { return this.blob.files; }
  get stats(): BlobStats { return this.blob.stats; }

  override read(dst: Uint8Array, offset: number): Promise<number> {
    if (this.released) return Promise.reject(new DiskError('EIO', `${this.digest}: read after close`));
    return this.blob.read(dst, offset);
  }

  /** Forgets every cached byte of the blob (for every handle): reads go upstream again. */
  discard(): Promise<void> {
    return this.blob.discard();
  }

  startBackgroundDownload(opts?: BackgroundDownloadOptions): BackgroundDownload {
    return this.blob.startBackgroundDownload(opts);
  }

  /** Another handle on the same blob, closed on its own. */
  share(): CacheHandle {
    if (this.released) throw new DiskError('EIO', `${this.digest}: share after close`);
    return this.owner.handle(this.blob);
  }

  override close(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    return this.owner.release(this.blob);
  }
}
