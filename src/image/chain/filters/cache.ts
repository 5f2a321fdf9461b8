/** The persistent block cache as a chain filter: the blob's bytes through a CacheHandle. */
import type { BlobCache } from '../../../io/cache.ts';
import type { ChainFilter } from '../layer.ts';

export function cacheFilter(cache: BlobCache): ChainFilter {
  return async (next, ctx) => {
    if (!ctx.blob) throw new Error(`${ctx.name}: the block cache needs a content-addressed blob`);
    const handle = await cache.open(ctx.blob.digest, ctx.blob.size, next);
    ctx.cache = handle;
    return handle;
  };
}
