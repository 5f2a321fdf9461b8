/** Sequential read-ahead into the cache below, quiet while the layer is attached. */
import { ReadAheadSource } from '../../../io/cache.ts';
import type { ChainFilter } from '../layer.ts';

export function readAheadFilter(bytes: number): ChainFilter {
  return (next, ctx) => {
    if (bytes <= 0 || !next.caps.prefetch) return next;
    const ahead = new ReadAheadSource(next, bytes);
    ctx.pauseWhileAttaching.push(() => ahead.pause());
    return ahead;
  };
}
