/**
 * The merged index of a layer stack (formats.md §2.11): one flat, sorted, non-overlapping extent
 * list over every read-only layer, where the top-most layer that maps a sector wins and `tag`
 * names that layer counted from the top (0 = top). Zeroed extents stay in the list because they
 * mask the data of the layers below; sectors no layer maps are holes (absent from the list).
 *
 * Built by pairwise "overlay" passes (upper entries kept, lower entries cut into the upper's
 * gaps), reduced like a balanced tree, so 255 layers cost about 8 linear passes rather than the
 * 255 a layer-by-layer sweep would take, with no recursion and no object per segment.
 */
import type { SegmentIndex } from '../format/lsmt/types.ts';
import { MAX_STACK_LAYERS } from '../format/lsmt/types.ts';

/** The reference implementation refuses merged indexes larger than this. */
export const MAX_MERGED_RECORDS = 128_000_000;

/** Called for each extent a lookup finds, trimmed to the range; `tag` is the layer (0 = top). */
export type MergedVisitor = (offset: number, length: number, moffset: number, zeroed: boolean, tag: number) => void;

interface Extents {
  count: number;
  offset: Float64Array;
  length: Uint32Array;
  moffset: Float64Array;
  zeroed: Uint8Array;
  tag: Uint8Array;
}

function allocate(capacity: number): Extents {
  return {
    count: 0,
    offset: new Float64Array(capacity),
    length: new Uint32Array(capacity),
    moffset: new Float64Array(capacity),
    zeroed: new Uint8Array(capacity),
    tag: new Uint8Array(capacity),
  };
}

/** Copies a layer's index, stamping every record with its layer number; checks the order on the way. */
function stamped(index: SegmentIndex, tag: number, layerName: string): Extents {
  const out = allocate(index.count);
  const { offset, length, moffset, zeroed } = index;
  let prevEnd = -1;
  let n = 0;
  for (let i = 0; i < index.count; i++) {
    const off = offset[i]!;
    const len = length[i]!;
    if (len === 0) continue;
    if (off < prevEnd) {
      throw new Error(`layer ${layerName}: index record ${i} at sector ${off} overlaps or precedes the record before it (which ends at ${prevEnd})`);
    }
    prevEnd = off + len;
    out.offset[n] = off;
    out.length[n] = len;
    out.moffset[n] = moffset[i]!;
    out.zeroed[n] = zeroed[i]!;
    n++;
  }
  out.tag.fill(tag);
  out.count = n;
  return out;
}

/** Upper's extents, plus lower's extents cut down to the sectors upper does not map. */
function overlay(upper: Extents, lower: Extents): Extents {
  const nU = upper.count;
  const nL = lower.count;
  // Every upper extent can split one lower extent in two, so this bounds the output.
  const out = allocate(2 * nU + nL);
  const { offset: uo, length: ul, moffset: um, zeroed: uz, tag: ut } = upper;
  const { offset: lo, length: ll, moffset: lm, zeroed: lz, tag: lt } = lower;
  const { offset: oo, length: ol, moffset: om, zeroed: oz, tag: ot } = out;
  let n = 0;
  let i = 0;
  let j = 0;
  let coveredTo = 0; // end of the last upper extent emitted
  let ls = nL > 0 ? lo[0]! : 0; // start of what remains of lower extent j
  while (i < nU || j < nL) {
    if (j < nL) {
      const le = lo[j]! + ll[j]!;
      if (ls < coveredTo) ls = coveredTo;
      if (ls >= le) {
        j++;
        if (j < nL) ls = lo[j]!;
        continue;
      }
      if (i >= nU || ls < uo[i]!) {
        const limit = i < nU && uo[i]! < le ? uo[i]! : le;
        oo[n] = ls;
        ol[n] = limit - ls;
        oz[n] = lz[j]!;
        om[n] = lz[j] ? lm[j]! : lm[j]! + (ls - lo[j]!);
        ot[n] = lt[j]!;
        n++;
        ls = limit;
        continue;
      }
    }
    oo[n] = uo[i]!;
    ol[n] = ul[i]!;
    om[n] = um[i]!;
    oz[n] = uz[i]!;
    ot[n] = ut[i]!;
    coveredTo = uo[i]! + ul[i]!;
    n++;
    i++;
  }
  out.count = n;
  return out;
}

export class MergedIndex implements SegmentIndex {
  private constructor(
    readonly count: number,
    readonly offset: Float64Array,
    readonly length: Uint32Array,
    readonly moffset: Float64Array,
    readonly zeroed: Uint8Array,
    readonly tag: Uint8Array,
  ) {}

  /**
   * Merges the indexes of `layers`, given bottom-first (the order of a config's `lowers`).
   * `names` (same order) only label errors.
   */
  static build(layers: readonly SegmentIndex[], names?: readonly string[]): MergedIndex {
    const n = layers.length;
    if (n > MAX_STACK_LAYERS) {
      throw new Error(`a stack holds at most ${MAX_STACK_LAYERS} read-only layers; got ${n}`);
    }
    if (n === 0) return MergedIndex.empty();
    // Top-first, tagged with the position in that order.
    let level: Extents[] = [];
    for (let k = 0; k < n; k++) {
      const bottomIdx = n - 1 - k;
      level.push(stamped(layers[bottomIdx]!, k, names?.[bottomIdx] ?? `#${bottomIdx}`));
    }
    while (level.length > 1) {
      const next: Extents[] = [];
      for (let k = 0; k < level.length; k += 2) {
        const merged = k + 1 < level.length ? overlay(level[k]!, level[k + 1]!) : level[k]!;
        if (merged.count > MAX_MERGED_RECORDS) {
          throw new Error(`the merged index would hold ${merged.count} records, more than the limit of ${MAX_MERGED_RECORDS}`);
        }
        next.push(merged);
      }
      level = next;
    }
    const r = level[0]!;
    if (r.count > MAX_MERGED_RECORDS) {
      throw new Error(`the merged index would hold ${r.count} records, more than the limit of ${MAX_MERGED_RECORDS}`);
    }
    const c = r.count;
    // Exact-size copies so the working capacity is released.
    return new MergedIndex(c, r.offset.slice(0, c), r.length.slice(0, c), r.moffset.slice(0, c),
      r.zeroed.slice(0, c), r.tag.slice(0, c));
  }

  static empty(): MergedIndex {
    return new MergedIndex(0, new Float64Array(0), new Uint32Array(0), new Float64Array(0), new Uint8Array(0), new Uint8Array(0));
  }

  /** Position of the first extent that ends after `sector` (== count when none does). */
  firstEndingAfter(sector: number): number {
    const off = this.offset;
    const n = this.count;
    if (n === 0 || off[0]! > sector) return 0;
    // Last extent starting at or before `sector`. The loop runs a fixed log2(n) steps and picks
    // the next base with a conditional move rather than a branch the CPU would mispredict half
    // the time (measured ~10-20% faster than the textbook loop at 1k and 1M extents).
    let base = 0;
    let len = n;
    while (len > 1) {
      const half = len >>> 1;
      base = off[base + half]! <= sector ? base + half : base;
      len -= half;
    }
    return off[base]! + this.length[base]! > sector ? base : base + 1;
  }

  /** Visits, in order, the extents intersecting [sector, sector+count), trimmed to it. */
  lookup(sector: number, count: number, visit: MergedVisitor): void {
    const end = sector + count;
    const { offset: off, length: len, moffset, zeroed, tag } = this;
    const n = this.count;
    for (let i = this.firstEndingAfter(sector); i < n; i++) {
      const s = off[i]!;
      if (s >= end) break;
      const e = s + len[i]!;
      const from = s < sector ? sector : s;
      const to = e > end ? end : e;
      const z = zeroed[i] === 1;
      visit(from, to - from, z ? moffset[i]! : moffset[i]! + (from - s), z, tag[i]!);
    }
  }
}
