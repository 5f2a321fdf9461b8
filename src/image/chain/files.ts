/**
 * A stack of local layer files as one Disk, through the image chain: each lower is a layer file
 * in any form (plain, ZFile, tar-wrapped: detected from its bytes) or a writable data+index pair
 * read as a read-only layer; the optional upper is a writable pair opened for writing. Layer
 * files are read through FileSource (small reads synchronous while they hit the page cache).
 */
import type { LayerStack } from '../../disk/layer-stack.ts';
import { Owner } from '../../util/owner.ts';
import { layerChainConfig } from './config.ts';
import { openImageChain, type LowerSpec as ChainLowerSpec, type UpperSpec, type WritablePairPaths } from './image.ts';
import { fileUpstream } from './upstreams.ts';

export type { WritablePairPaths } from './image.ts';

/** A lower layer: a layer file, or a writable layer's data and index files read as a read-only layer. */
export type LowerSpec = string | WritablePairPaths;

export interface OpenStackOptions {
  /** The writable layer on top (created with the stack's identity when `create` is given). */
  upper?: UpperSpec;
  size?: number;
}

/** The reference opens up to 32 indexes in parallel. */
const OPEN_PARALLEL = 32;

/** Opens `lowers` (bottom-first) and the optional upper as one disk; the stack owns them all. */
export async function openStackFromFiles(lowers: readonly LowerSpec[], opts: OpenStackOptions = {}): Promise<LayerStack> {
  const owner = new Owner();
  try {
    const chain = await openImageChain({
      lowers: lowers.map((l): ChainLowerSpec => (typeof l === 'string' ? { chain: { name: l, upstream: fileUpstream(l) } } : { pair: l })),
      ...(opts.upper ? { upper: opts.upper } : {}),
      ...(opts.size !== undefined ? { size: opts.size } : {}),
      config: layerChainConfig({}),
      parallel: OPEN_PARALLEL,
    }, owner);
    return chain.stack;
  } catch (err) {
    await owner.close().catch(() => {});
    throw err;
  }
}

/** Parses "DATA,INDEX" (the CLI form of a writable pair). */
export function parsePair(spec: string, what: string): WritablePairPaths {
  const parts = spec.split(',');
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`${what}: expected DATA,INDEX, got "${spec}"`);
  return { data: parts[0], index: parts[1] };
}
