/**
 * Opens a LayerStack from files: each lower is a layer file in any form (plain, ZFile, tar-wrapped:
 * detected from its bytes) or a writable data+index pair read as a read-only layer; the optional
 * upper is a writable pair opened for writing. Layer files are read through LocalFileSource (small
 * reads synchronous while they hit the page cache). Whatever was opened is closed again on failure.
 */
import { FileSource } from '../io/file.ts';
import type { ReadOnlyLayer, WritableLayer } from '../format/lsmt/types.ts';
import { openLayerSource } from '../format/open-layer.ts';
import { openWritablePairReadOnly } from '../format/lsmt/readonly.ts';
import { openWritableLayer } from '../format/lsmt/writable.ts';
import { LayerStack } from './layer-stack.ts';
import { LocalFileSource } from './local-file.ts';

export interface WritablePairPaths { data: string; index: string }

/** A lower layer: a layer file, or a writable layer's data and index files read as a read-only layer. */
export type LowerSpec = string | WritablePairPaths;

export interface OpenStackOptions {
  upper?: WritablePairPaths;
  size?: number;
}

/** Layers opened at once; the reference opens up to 32 indexes in parallel. */
const OPEN_PARALLEL = 32;

async function openPairReadOnly(p: WritablePairPaths): Promise<ReadOnlyLayer> {
  const data = await LocalFileSource.open(p.data);
  try {
    const index = await FileSource.open(p.index);
    try {
      return await openWritablePairReadOnly(data, index, p.data);
    } catch (e) {
      await index.close();
      throw e;
    }
  } catch (e) {
    await data.close();
    throw e;
  }
}

function openLower(spec: LowerSpec): Promise<ReadOnlyLayer> {
  return typeof spec === 'string' ? LocalFileSource.open(spec).then((src) => openLayerSource(src, spec)) : openPairReadOnly(spec);
}

/** Opens `lowers` (bottom-first) and the optional upper as one disk. */
export async function openStackFromFiles(lowers: readonly LowerSpec[], opts: OpenStackOptions = {}): Promise<LayerStack> {
  const opened: ReadOnlyLayer[] = new Array(lowers.length);
  const owned: Array<{ close(): Promise<void> }> = [];
  let upper: WritableLayer | undefined;
  try {
    for (let from = 0; from < lowers.length; from += OPEN_PARALLEL) {
      const batch = lowers.slice(from, from + OPEN_PARALLEL);
      const results = await Promise.allSettled(batch.map(openLower));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          opened[from + i] = r.value;
          owned.push(r.value);
        }
      });
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    if (opts.upper) {
      // The writable layer tags its index records with the number of layers below it (§2.5).
      upper = await openWritableLayer(opts.upper.data, opts.upper.index, { tag: lowers.length });
      owned.push(upper);
    }
    return await LayerStack.open({ lowers: opened, ...(upper ? { upper } : {}), ...(opts.size !== undefined ? { size: opts.size } : {}) });
  } catch (e) {
    await Promise.allSettled(owned.map((l) => l.close()));
    throw e;
  }
}

/** Parses "DATA,INDEX" (the CLI form of a writable pair). */
export function parsePair(spec: string, what: string): WritablePairPaths {
  const parts = spec.split(',');
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`${what}: expected DATA,INDEX, got "${spec}"`);
  return { data: parts[0], index: parts[1] };
}
