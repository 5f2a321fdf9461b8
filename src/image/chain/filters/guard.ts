/**
 * The corruption guard over a cached layer's decoded data. The cache cannot check a unit on its
 * own (only the whole blob has a digest); the ZFile CRC above it can, so that is where bad cached
 * bytes are noticed: the cached blob is dropped and the read retried once from upstream before
 * it fails with EIO.
 */
import { DiskError, errorMessage } from '../../../errors.ts';
import { SourceFilter } from '../../../io/filter.ts';
import type { ByteSource } from '../../../io/types.ts';
import { log } from '../../../util/log.ts';
import { isCorruption, type ChainContext, type ChainFilter } from '../layer.ts';

class GuardedSource extends SourceFilter {
  constructor(next: ByteSource, private readonly ctx: ChainContext) {
    super(next);
  }

  override async read(dst: Uint8Array, offset: number): Promise<number> {
    try {
      return await this.next.read(dst, offset);
    } catch (err) {
      const cached = this.ctx.cache;
      if (!isCorruption(err) || !cached || cached.complete) throw err;
      this.ctx.corruptRefetches++;
      log.warn({ blob: cached.digest, offset, err: errorMessage(err) }, 'corrupt data from the cache or registry: dropping the cached blob and refetching');
      await cached.discard();
      try {
        return await this.next.read(dst, offset);
      } catch (again) {
        if (isCorruption(again)) await cached.discard().catch(() => {});
        throw new DiskError('EIO', `blob ${cached.digest}: ${errorMessage(again)} (again after refetching)`, { cause: again });
      }
    }
  }
}

export function guardFilter(): ChainFilter {
  return (next, ctx) => (ctx.cache ? new GuardedSource(next, ctx) : next);
}
