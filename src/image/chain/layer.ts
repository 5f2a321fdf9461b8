/**
 * One layer's chain, assembled in one place: an upstream that yields the blob's bytes (a local
 * file, a registry Range reader; later P2P peers and mirrors), the blob filters over those raw
 * bytes (the block cache, read-ahead; later verification), the format decoders detected from
 * the bytes (tar, ZFile, LSMT), then the layer filters over the decoded data (the corruption
 * guard; later trace recording). Each stage closes the one below it; the caller's Owner closes
 * the layer. Which filters a chain has is configuration (config.ts), not code here.
 */
import { FormatError } from '../../errors.ts';
import type { ReadOnlyLayer, SegmentIndex } from '../../format/lsmt/types.ts';
import type { DigestTableRef } from '../../format/tar/digest-table.ts';
import { openLayerSource, type DetectedLayer, type LayerWrapper } from '../../format/open-layer.ts';
import type { CacheHandle } from '../../io/cache.ts';
import type { ByteSource } from '../../io/types.ts';
import type { VerifyCounters } from '../../io/verify.ts';

export interface BlobRef {
  digest: string;
  size: number;
  /** The blob's chunk digest table (verify-table annotation): fetched bytes are then verified. */
  table?: DigestTableRef;
}

/** Where a layer's bytes come from. */
export interface Upstream {
  /** For errors and logs: a path, a URL. */
  readonly name: string;
  open(): ByteSource | Promise<ByteSource>;
}

/** What the stages of one chain learn about each other while it is built and used. */
export interface ChainContext {
  /** Names the layer in errors. */
  readonly name: string;
  /** The blob, when the layer is a content-addressed blob (remote and layout images). */
  readonly blob: BlobRef | undefined;
  /** Set by the cache filter: the layer's handle on its cached blob. */
  cache?: CacheHandle;
  /** Set by filters that must be quiet while attaching (read-ahead): called around format detection. */
  pauseWhileAttaching: Array<() => () => void>;
  /** Counted by the guard: cached bytes dropped after they failed a format check. */
  corruptRefetches: number;
  /** Set by the verify filter: a table member fetched and checked against its annotation (for the cache to keep), and its counters. */
  verifyTable?: Uint8Array;
  verify?: VerifyCounters;
}

/** A stage inserted into a chain: wraps `next`, closes it when closed. */
export type ChainFilter = (next: ByteSource, ctx: ChainContext) => ByteSource | Promise<ByteSource>;

export interface LayerChainConfig {
  /** Over the raw blob bytes, lowest first. */
  blob: readonly ChainFilter[];
  /** Over the decoded layer data, lowest first. */
  layer: readonly ChainFilter[];
}

export interface LayerChainSpec {
  name: string;
  blob?: BlobRef;
  upstream: Upstream;
}

/** A layer as the stack sees it, plus what its chain learned. */
export interface ChainLayer extends ReadOnlyLayer {
  readonly wrappers: LayerWrapper[];
  /** The cached blob under this layer, when the chain has a cache. */
  readonly cached: CacheHandle | undefined;
  readonly corruptRefetches: number;
  /** Chunk verification counters, when the blob has a digest table. */
  readonly verify?: VerifyCounters;
}

export function isCorruption(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 6; depth++) {
    if (e instanceof FormatError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

async function applyFilters(src: ByteSource, filters: readonly ChainFilter[], ctx: ChainContext): Promise<ByteSource> {
  let cur = src;
  for (const filter of filters) {
    try {
      cur = await filter(cur, ctx);
    } catch (err) {
      await cur.close().catch(() => {});
      throw err;
    }
  }
  return cur;
}

class OpenedLayer implements ChainLayer {
  constructor(private readonly detected: DetectedLayer, readonly data: ByteSource, private readonly ctx: ChainContext) {}
  get name(): string { return this.detected.name; }
  get virtualSize(): number { return this.detected.virtualSize; }
  get index(): SegmentIndex { return this.detected.index; }
  get uuid(): string { return this.detected.uuid; }
  get parentUuid(): string { return this.detected.parentUuid; }
  get wrappers(): LayerWrapper[] { return this.detected.wrappers; }
  get cached(): CacheHandle | undefined { return this.ctx.cache; }
  get corruptRefetches(): number { return this.ctx.corruptRefetches; }
  get verify(): VerifyCounters | undefined { return this.ctx.verify; }
  /** The layer filters close the decoded data, which closes the decoders, the blob filters and the upstream. */
  close(): Promise<void> { return this.data.close(); }
}

/**
 * Every layer format keeps its trailer and index at the end of the blob (ZFile, a sealed LSMT
 * layer, a tar of either): detection learns that only after reading the head, one round trip
 * later. Fetching the last refill unit while the head is read makes the two requests run at
 * once; it is the unit the open would fetch next anyway, so no byte more is fetched.
 */
function prefetchTail(cache: CacheHandle | undefined): void {
  if (!cache || cache.complete || cache.size === 0) return;
  const unit = cache.map.unit;
  const tail = Math.floor((cache.size - 1) / unit) * unit;
  if (tail > 0) void cache.prefetch(tail, cache.size - tail, 'readahead');
}

/** Builds the chain of `spec` as `config` says; on failure closes whatever it had opened. */
export async function openLayerChain(spec: LayerChainSpec, config: LayerChainConfig): Promise<ChainLayer> {
  const ctx: ChainContext = { name: spec.name, blob: spec.blob, pauseWhileAttaching: [], corruptRefetches: 0 };
  const raw = await spec.upstream.open();
  if (spec.blob && raw.size !== spec.blob.size) {
    await raw.close();
    throw new Error(`${spec.upstream.name}: blob is ${raw.size} bytes, the manifest says ${spec.blob.size}`);
  }
  const blob = await applyFilters(raw, config.blob, ctx);
  prefetchTail(ctx.cache);
  // A second handle keeps the cached blob open past openLayerSource's cleanup, so bytes that a
  // corrupt fetch left while locating the index can still be dropped.
  const keep = ctx.cache?.share();
  const resumes = ctx.pauseWhileAttaching.map((pause) => pause());
  let detected: DetectedLayer;
  try {
    detected = await openLayerSource(blob, spec.name);
  } catch (err) {
    if (keep && isCorruption(err) && !keep.complete) await keep.discard().catch(() => {});
    throw err;
  } finally {
    for (const resume of resumes) resume();
    await keep?.close();
  }
  let data: ByteSource;
  try {
    data = await applyFilters(detected.data, config.layer, ctx);
  } catch (err) {
    await detected.close().catch(() => {});
    throw err;
  }
  return new OpenedLayer(detected, data, ctx);
}
