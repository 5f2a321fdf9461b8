/**
 * Which filters a layer chain has, decided from the configuration in this one place. Adding a
 * stage to every remote layer is a new filter file plus a line here (or, for one caller, an
 * entry in `extra`).
 */
import type { BlobCache } from '../../io/cache.ts';
import { cacheFilter } from './filters/cache.ts';
import { guardFilter } from './filters/guard.ts';
import { readAheadFilter } from './filters/read-ahead.ts';
import { verifyFilter } from './filters/verify.ts';
import type { ChainFilter, LayerChainConfig } from './layer.ts';

export interface ExtraFilters {
  /** Between the upstream and the cache: they see every byte fetched (verification, counters). */
  upstream?: readonly ChainFilter[];
  /** Above the cache, below the format decoders: they see every blob read. */
  blob?: readonly ChainFilter[];
  /** Over the decoded layer data: they see every read the disk makes of the layer (tracing). */
  layer?: readonly ChainFilter[];
}

export interface ChainOptions {
  /** The persistent block cache; without one, reads go straight to the upstream (local files). */
  cache?: BlobCache;
  /** Sequential read-ahead into the cache (default 4 refill units; 0: off). */
  readAheadBytes?: number;
  extra?: ExtraFilters;
  /**
   * Check fetched bytes against the blob's chunk digest table when it has one (default true).
   * Only chains with a cache fetch from an upstream that may lie (registry, mirror, peer); a chain
   * without one reads local files on every read, where checking 64 KiB per read would cost more
   * than it guards.
   */
  verify?: boolean;
}

export function layerChainConfig(o: ChainOptions): LayerChainConfig {
  const cached: ChainFilter[] = o.cache
    ? [cacheFilter(o.cache), readAheadFilter(o.readAheadBytes ?? 4 * o.cache.refillUnit)]
    : [];
  return {
    blob: [...(o.extra?.upstream ?? []), ...(o.verify === false || !o.cache ? [] : [verifyFilter(o.cache)]), ...cached, ...(o.extra?.blob ?? [])],
    layer: [guardFilter(), ...(o.extra?.layer ?? [])],
  };
}
