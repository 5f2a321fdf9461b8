/**
 * An image's chain: its lower layers (each a layer chain, or a writable pair read as a read-only
 * layer), the optional writable layer on top, stacked into one Disk. Layers open in parallel;
 * whatever opened is closed again if a later one fails. On success the stack owns its layers and
 * the caller's Owner owns the stack, so one `owner.close()` undoes everything.
 */
import { access } from 'node:fs/promises';
import { LayerStack } from '../../disk/layer-stack.ts';
import { isNullUuid } from '../../format/lsmt/header.ts';
import { openWritablePairFiles } from '../../format/lsmt/readonly.ts';
import { SECTOR, type ReadOnlyLayer, type WritableLayer } from '../../format/lsmt/types.ts';
import { createWritableLayer, openWritableLayer } from '../../format/lsmt/writable.ts';
import type { Disk } from '../../io/types.ts';
import { log } from '../../util/log.ts';
import type { Owner } from '../../util/owner.ts';
import { openLayerChain, type ChainLayer, type LayerChainConfig, type LayerChainSpec } from './layer.ts';

export interface WritablePairPaths { data: string; index: string }

export interface UpperSpec extends WritablePairPaths {
  /**
   * Create the pair when it does not exist yet, as overlaybd stacks a new layer: a new uuid, the
   * top lower's uuid as its parent, and the stack's virtual size (or `virtualSize`, needed when
   * there is no layer below).
   */
  create?: { virtualSize?: number };
}

/** A lower layer: a layer chain, or a writable layer's data and index files read as a read-only layer. */
export type LowerSpec = { chain: LayerChainSpec } | { pair: WritablePairPaths };

export interface ImageChainSpec {
  /** Bottom first. */
  lowers: readonly LowerSpec[];
  /** The writable layer on top. */
  upper?: UpperSpec;
  /** Virtual size; default the top-most layer that states one. */
  size?: number;
  config: LayerChainConfig;
  /** Layers opened at once (default 8). */
  parallel?: number;
  /** Wraps the opening of lower `i`, e.g. to account what attaching it fetched. */
  measure?: (i: number, open: () => Promise<ChainLayer>) => Promise<ChainLayer>;
}

export interface ImageChain {
  disk: Disk;
  stack: LayerStack;
  /** Bottom first, as given. */
  layers: ChainLayer[];
}

function openLower(spec: LowerSpec, config: LayerChainConfig): Promise<ChainLayer> {
  if ('chain' in spec) return openLayerChain(spec.chain, config);
  return openWritablePairFiles(spec.pair.data, spec.pair.index)
    .then((layer) => Object.assign(layer, { wrappers: [], cached: undefined, corruptRefetches: 0 }));
}

/** Opens every lower, at most `limit` at a time; on any failure closes those that opened, then throws. */
async function openAll(spec: ImageChainSpec, owner: Owner): Promise<ChainLayer[]> {
  const out: ChainLayer[] = new Array(spec.lowers.length);
  let next = 0;
  let failed: unknown;
  const measure = spec.measure ?? ((_i, open) => open());
  const worker = async (): Promise<void> => {
    while (next < spec.lowers.length && failed === undefined) {
      const i = next++;
      try {
        out[i] = owner.adopt(await measure(i, () => openLower(spec.lowers[i]!, spec.config)), `layer ${i}`);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  const limit = Math.max(1, Math.min(spec.parallel ?? 8, spec.lowers.length));
  await Promise.all(Array.from({ length: limit }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

/** The top-most non-zero virtual size, as the stack takes it. */
function stackSize(layers: readonly ReadOnlyLayer[]): number {
  for (let k = layers.length - 1; k >= 0; k--) if (layers[k]!.virtualSize > 0) return layers[k]!.virtualSize;
  return 0;
}

async function createUpper(upper: UpperSpec, layers: readonly ReadOnlyLayer[]): Promise<void> {
  const [hasData, hasIndex] = await Promise.all([exists(upper.data), exists(upper.index)]);
  if (hasData && hasIndex) return;
  if (hasData !== hasIndex) {
    throw new Error(`${hasData ? upper.data : upper.index} exists but ${hasData ? upper.index : upper.data} does not; refusing to guess`);
  }
  const virtualSize = upper.create?.virtualSize ?? stackSize(layers);
  if (virtualSize <= 0) throw new Error('a new writable layer with no layers below needs a size (e.g. --size 10G)');
  if (virtualSize % SECTOR !== 0) throw new Error(`size ${virtualSize} must be a multiple of ${SECTOR} bytes`);
  const top = layers[layers.length - 1];
  const parentUuid = top && !isNullUuid(top.uuid) ? top.uuid : undefined;
  await (await createWritableLayer(upper.data, upper.index, { virtualSize, tag: layers.length, ...(parentUuid ? { parentUuid } : {}) })).close();
}

/** Warns (naming both) where a layer's parent uuid is not the uuid of the layer below it. */
function checkParentChain(layers: ReadonlyArray<{ name: string; uuid: string; parentUuid: string }>): void {
  for (let i = 1; i < layers.length; i++) {
    const below = layers[i - 1]!;
    const layer = layers[i]!;
    if (isNullUuid(layer.parentUuid) || isNullUuid(below.uuid) || layer.parentUuid === below.uuid) continue;
    log.warn({ layer: layer.name, parentUuid: layer.parentUuid, below: below.name, belowUuid: below.uuid },
      `layer ${layer.name} names parent ${layer.parentUuid}, but the layer below it, ${below.name}, is ${below.uuid}: the stack may not be the one it was built on`);
  }
}

/** Builds the image; everything it opens is adopted by `owner` (close the owner on failure too). */
export async function openImageChain(spec: ImageChainSpec, owner: Owner): Promise<ImageChain> {
  const layers = await openAll(spec, owner);
  let upper: WritableLayer | undefined;
  if (spec.upper?.create) await createUpper(spec.upper, layers);
  if (spec.upper) {
    // The writable layer tags its index records with the number of layers below it (§2.5).
    upper = owner.adopt(await openWritableLayer(spec.upper.data, spec.upper.index, { tag: layers.length }), 'writable layer');
  }
  checkParentChain([...layers, ...(upper ? [upper] : [])]);
  const stack = await LayerStack.open({ lowers: layers, ...(upper ? { upper } : {}), ...(spec.size !== undefined ? { size: spec.size } : {}) });
  // The stack closes its layers and its upper from here on.
  for (const l of layers) owner.disown(l);
  if (upper) owner.disown(upper);
  owner.adopt(stack, 'layer stack');
  return { disk: stack, stack, layers };
}
