/**
 * The persistent block cache as a chain filter: the blob's bytes through a CacheHandle. A layer
 * that is not a content-addressed blob (a local layer file) is read directly: there is nothing
 * remote to cache, and the cache is keyed by digest.
 */
import type { BlobCache } from '../../../io/cache.ts';
import type { ChainFilter } from '../layer.ts';

export function cacheFilter(cache: BlobCache): ChainFilter {
  return async (next, ctx) => {
    if (!ctx.blob) return next;
    const handle = await cache.open(ctx.blob.digest, ctx.blob.size, next);
    ctx.cache = handle;
    // Only verified bytes enter the cache over a verify filter; its table, kept beside the cached
    // blob, lets `dadi cache verify` check the cache offline.
    if (ctx.verifyTable) await cache.saveTable(ctx.blob.digest, ctx.verifyTable).catch(() => {});
    return handle;
  };
}
