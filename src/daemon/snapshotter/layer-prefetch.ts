/**
 * Whole-layer priority prefetch (issue 12 item 3), for images nobody recorded a trace of: once a
 * rootfs is prepared, whole layers are brought into the block cache in a priority order, in
 * large requests, through the same low-priority machinery as a trace replay (TraceReplay: it
 * waits while a demand read of the layer waits on upstream, uses fewer connections than the
 * registry client, never fetches a byte twice, stops when the image detaches).
 *
 * Which layers, in which order, is a selector: from the snapshotter config (`[prefetch] layers`)
 * for every image, or from the rootfs Prepare's label `containerd.io/snapshot/dadi/prefetch-layers`
 * (which wins; `none` turns it off for that container):
 * - `top-first` (alias `all`): every layer, the top one first (the top layer usually holds the
 *   application, the bottom one the base distribution);
 * - `bottom-first`: every layer, the bottom one first;
 * - a comma-separated list: only these layers, in this order; an item is `top`, `bottom`, an
 *   index (0 = bottom, -1 = top, -2 = the one below it...), or a layer digest (`sha256:...`, or
 *   at least 8 hex digits of it).
 */
import type { ReplayRequest } from '../../image/trace/replay.ts';

export const PREFETCH_LAYERS_LABEL = 'containerd.io/snapshot/dadi/prefetch-layers';

/** Requests of this size: large enough that a registry round trip is a small part of each. */
export const LAYER_REQUEST_BYTES = 4 << 20;

type Item = { kind: 'index'; index: number } | { kind: 'digest'; hex: string };
export type LayerSelector = { kind: 'all'; topFirst: boolean } | { kind: 'list'; items: Item[] };

export class LayerSelectorError extends Error {
  override readonly name = 'LayerSelectorError';
}

/** The selector `text` names; undefined for off (``, `none`, `off`). Throws on a malformed one. */
export function parseLayerSelector(text: string): LayerSelector | undefined {
  const t = text.trim().toLowerCase();
  if (t === '' || t === 'none' || t === 'off') return undefined;
  if (t === 'top-first' || t === 'all') return { kind: 'all', topFirst: true };
  if (t === 'bottom-first') return { kind: 'all', topFirst: false };
  const items = t.split(',').map((s) => s.trim()).filter(Boolean).map((s): Item => {
    if (s === 'top') return { kind: 'index', index: -1 };
    if (s === 'bottom') return { kind: 'index', index: 0 };
    if (/^-?\d+$/.test(s)) return { kind: 'index', index: Number(s) };
    const m = /^(?:sha256:)?([0-9a-f]{8,64})$/.exec(s);
    if (m) return { kind: 'digest', hex: m[1]! };
    throw new LayerSelectorError(`prefetch layers: ${JSON.stringify(s)} is not top, bottom, a layer index or a layer digest ` +
      '(expected top-first, bottom-first, none, or a comma-separated list of those items)');
  });
  if (items.length === 0) throw new LayerSelectorError(`prefetch layers: ${JSON.stringify(text)} names no layer`);
  return { kind: 'list', items };
}

/**
 * The indices (0 = bottom) of the layers to prefetch, first first, for an image whose layers
 * (bottom first) have these digests (undefined for a layer that is not a blob). Items that match
 * no layer of this image are left out (a config-wide list may name another image's layers).
 */
export function layerOrder(sel: LayerSelector, digests: ReadonlyArray<string | undefined>): number[] {
  const n = digests.length;
  if (sel.kind === 'all') {
    const all = Array.from({ length: n }, (_, i) => i);
    return sel.topFirst ? all.reverse() : all;
  }
  const out: number[] = [];
  for (const it of sel.items) {
    let i: number;
    if (it.kind === 'index') i = it.index < 0 ? n + it.index : it.index;
    else i = digests.findIndex((d) => d !== undefined && d.replace(/^sha256:/, '').startsWith(it.hex));
    if (i >= 0 && i < n && !out.includes(i)) out.push(i);
  }
  return out;
}

/** Each listed layer's whole data, in `size`-byte requests, layer after layer in `order`. */
export function planLayerPrefetch(order: readonly number[], sizes: readonly number[], size = LAYER_REQUEST_BYTES): ReplayRequest[] {
  const out: ReplayRequest[] = [];
  for (const layer of order) {
    const total = sizes[layer] ?? 0;
    for (let offset = 0; offset < total; offset += size) out.push({ layer, offset, length: Math.min(size, total - offset) });
  }
  return out;
}
