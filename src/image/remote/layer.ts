/**
 * One lower layer of a remote image, opened the overlaybd way (formats.md §5.1): the registry
 * blob by Range (HttpRangeSource) under the persistent block cache (CachedSource), then the
 * wrappers detected from its bytes (tar, ZFile with CRCs, LSMT), reading only what locates the
 * index. The layer's data is guarded: a block that fails its CRC came from a corrupt fetch, so
 * the cached copy is dropped and the read retried once from the registry before failing EIO.
 */
import { DiskError, FormatError, errorMessage } from '../../errors.ts';
import { openLayerSource, type DetectedLayer, type LayerWrapper } from '../../format/open-layer.ts';
import type { ReadOnlyLayer, SegmentIndex } from '../../format/lsmt/types.ts';
import type { BlobCache, CachedSource } from '../../io/cache.ts';
import { HttpRangeSource } from '../../io/http-range.ts';
import type { ByteSource } from '../../io/types.ts';
import type { RegistryClient, RepositoryRef } from '../../registry/client.ts';
import { log } from '../../util/log.ts';

export interface LayerBlob { digest: string; size: number }

/** A layer as the stack sees it, plus what attaching learned about it. */
export interface RemoteLayer extends ReadOnlyLayer {
  readonly detected: DetectedLayer;
  readonly cached: CachedSource | undefined;
  readonly wrappers: LayerWrapper[];
  /** CRC failures that made us drop the cached blob and refetch. */
  corruptRefetches: number;
}

function isCorruption(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 6; depth++) {
    if (e instanceof FormatError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The layer's decompressed view with corruption handling. The cache cannot check a unit on its
 * own (only the whole blob has a digest); the ZFile CRC above it can, so that is where bad cached
 * bytes are noticed and thrown away.
 */
class GuardedSource implements ByteSource {
  readonly name: string;
  constructor(private readonly inner: ByteSource, private readonly owner: { cached: CachedSource | undefined; corruptRefetches: number }) {
    this.name = inner.name ?? 'layer';
  }

  get size(): number {
    return this.inner.size;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    try {
      return await this.inner.read(dst, offset);
    } catch (err) {
      const cached = this.owner.cached;
      if (!isCorruption(err) || !cached || cached.complete) throw err;
      this.owner.corruptRefetches++;
      log.warn({ blob: cached.digest, offset, err: errorMessage(err) }, 'corrupt data from the cache or registry: dropping the cached blob and refetching');
      await cached.discard();
      try {
        return await this.inner.read(dst, offset);
      } catch (again) {
        if (isCorruption(again)) await cached.discard().catch(() => {});
        throw new DiskError('EIO', `blob ${cached.digest}: ${errorMessage(again)} (again after refetching)`, { cause: again });
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

class OpenedRemoteLayer implements RemoteLayer {
  readonly data: ByteSource;
  corruptRefetches = 0;
  constructor(readonly detected: DetectedLayer, readonly cached: CachedSource | undefined) {
    this.data = new GuardedSource(detected.data, this);
  }
  get name(): string { return this.detected.name; }
  get virtualSize(): number { return this.detected.virtualSize; }
  get index(): SegmentIndex { return this.detected.index; }
  get uuid(): string { return this.detected.uuid; }
  get parentUuid(): string { return this.detected.parentUuid; }
  get wrappers(): LayerWrapper[] { return this.detected.wrappers; }
  close(): Promise<void> { return this.detected.close(); }
}

/** Opens a registry blob as a layer through the cache. `name` labels errors. */
export async function openRemoteLayer(client: RegistryClient, repo: RepositoryRef, blob: LayerBlob, cache: BlobCache,
  name: string): Promise<RemoteLayer> {
  const upstream = HttpRangeSource.fromDescriptor(client, repo, blob);
  const cached = await cache.open(blob.digest, blob.size, upstream);
  // An extra handle keeps the blob open past openLayerSource's cleanup, so a corrupt fetch while
  // locating the index can still be dropped from the cache.
  cached.refs++;
  const resumeReadAhead = cached.pauseReadAhead();
  let detected: DetectedLayer;
  try {
    detected = await openLayerSource(cached, name);
  } catch (err) {
    if (isCorruption(err) && !cached.complete) await cached.discard().catch(() => {});
    await cached.close();
    throw err;
  } finally {
    resumeReadAhead();
  }
  await cached.close();
  return new OpenedRemoteLayer(detected, cached);
}

/** Opens a local blob file (an OCI layout's) as a layer; no cache involved. */
export async function openLocalLayer(src: ByteSource, name: string): Promise<RemoteLayer> {
  return new OpenedRemoteLayer(await openLayerSource(src, name), undefined);
}
