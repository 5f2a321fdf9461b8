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

/**
 * Lookups use one of two layouts, chosen at build time:
 *
 * - packed (every extent ends at or below sector 2^31 - 1, i.e. disks up to 1 TiB, and lengths fit 22
 *   bits): extents in nodes of 16, each node 256 bytes holding 16 Int32 starts, 16 Int32 words of
 *   length/zeroed/tag, then 16 Float64 moffsets, so the record a search lands on sits in the same
 *   page as the keys it compared. Two sample arrays (every 16th start, every 256th) lead to the
 *   node: a binary search over the smaller one (a 1M-extent index samples to 13 KiB, in L1),
 *   then four steps inside one 64-byte block of the other, then four inside the node. Each step is
 *   branch-free integer arithmetic, since a mispredicted branch per step costs more than the
 *   compare (measured: about 2x at 1k extents against the Float64 search with ternaries).
 * - wide (anything else): the plain Float64 arrays and a binary search.
 */
const NODE = 16;
const NODE_I32 = 64; // Int32 slots per 256-byte node
const NODE_F64 = 32;
const META = 16; // Int32 offset of the length/zeroed/tag words inside a node
const MOFF = 16; // Float64 offset of the moffsets inside a node
/** Padding key: above any start a packed index holds, so searches never pick it. */
const PAD = 0x7fffffff;
const LENGTH_SHIFT = 9;
const ZEROED_BIT = 0x100;
const MAX_PACKED_LENGTH = (1 << (31 - LENGTH_SHIFT)) - 1;

/** Last position p of the sorted `keys` with keys[p] <= x (0 when there is none). */
function lastAtMost(keys: Int32Array, x: number): number {
  let base = 0;
  let len = keys.length;
  while (len > 1) {
    const half = len >>> 1;
    // (x - key) >> 31 is -1 when key > x, else 0: starts and x are below 2^31, so no overflow.
    base += half & ~((x - keys[base + half]!) >> 31);
    len -= half;
  }
  return base;
}

/** Last position in the 16-key block at `at` whose key is <= x (`at` when there is none). */
function lastAtMostIn16(keys: Int32Array, at: number, x: number): number {
  at += 8 & ~((x - keys[at + 8]!) >> 31);
  at += 4 & ~((x - keys[at + 4]!) >> 31);
  at += 2 & ~((x - keys[at + 2]!) >> 31);
  return at + (1 & ~((x - keys[at + 1]!) >> 31));
}

export class MergedIndex {
  /** Sectors at and above this are mapped by no extent. */
  private readonly limit: number;

  private constructor(
    readonly count: number,
    /** Which lookup layout this index uses (see above). */
    readonly layout: 'packed' | 'wide',
    private readonly nodes32: Int32Array,
    private readonly nodes64: Float64Array,
    private readonly samples16: Int32Array,
    private readonly samples256: Int32Array,
    private readonly wide: Extents | null,
    limit: number,
  ) {
    this.limit = limit;
  }

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
    return MergedIndex.from(r);
  }

  static empty(): MergedIndex {
    return MergedIndex.from(allocate(0));
  }

  private static from(r: Extents): MergedIndex {
    const n = r.count;
    const limit = n === 0 ? 0 : r.offset[n - 1]! + r.length[n - 1]!;
    let packable = limit <= PAD;
    for (let i = 0; packable && i < n; i++) packable = r.length[i]! <= MAX_PACKED_LENGTH;
    if (!packable) {
      // Exact-size copies so the working capacity is released.
      const wide: Extents = {
        count: n, offset: r.offset.slice(0, n), length: r.length.slice(0, n), moffset: r.moffset.slice(0, n),
        zeroed: r.zeroed.slice(0, n), tag: r.tag.slice(0, n),
      };
      return new MergedIndex(n, 'wide', new Int32Array(0), new Float64Array(0), new Int32Array(0), new Int32Array(0), wide, limit);
    }
    const nodeCount = Math.ceil(n / NODE);
    const buf = new ArrayBuffer(Math.max(1, nodeCount) * NODE_I32 * 4);
    const n32 = new Int32Array(buf);
    const n64 = new Float64Array(buf);
    for (let k = 0; k < nodeCount; k++) n32.fill(PAD, k * NODE_I32, k * NODE_I32 + NODE);
    for (let i = 0; i < n; i++) {
      const at = (i >>> 4) * NODE_I32 + (i & 15);
      n32[at] = r.offset[i]!;
      n32[at + META] = r.length[i]! << LENGTH_SHIFT | (r.zeroed[i] ? ZEROED_BIT : 0) | r.tag[i]!;
      n64[(i >>> 4) * NODE_F64 + MOFF + (i & 15)] = r.moffset[i]!;
    }
    // Every 16th start, padded to whole 16-key blocks; then every 16th of those.
    const s16 = new Int32Array(Math.ceil(nodeCount / NODE) * NODE).fill(PAD);
    for (let k = 0; k < nodeCount; k++) s16[k] = n32[k * NODE_I32]!;
    const s256 = new Int32Array(Math.ceil(nodeCount / NODE));
    for (let k = 0; k < s256.length; k++) s256[k] = s16[k * NODE]!;
    return new MergedIndex(n, 'packed', n32, n64, s16, s256, null, limit);
  }

  /** Position of the first extent that ends after `sector` (== count when none does). */
  firstEndingAfter(sector: number): number {
    if (sector >= this.limit) return this.count;
    if (this.wide !== null) return wideFirstEndingAfter(this.wide, sector);
    return this.packedFirstEndingAfter(sector | 0); // below limit, so below 2^31
  }

  private packedFirstEndingAfter(x: number): number {
    // A sector before the first extent lands on position 0 with no special case: every step keeps 0.
    const n32 = this.nodes32;
    const node = lastAtMostIn16(this.samples16, lastAtMost(this.samples256, x) * NODE, x);
    const at = node * NODE_I32;
    const j = lastAtMostIn16(n32, at, x) - at;
    const ends = n32[at + j]! + (n32[at + META + j]! >>> LENGTH_SHIFT);
    return node * NODE + (ends > x ? j : j + 1);
  }

  /** Visits, in order, the extents intersecting [sector, sector+count), trimmed to it. */
  lookup(sector: number, count: number, visit: MergedVisitor): void {
    if (sector >= this.limit) return;
    if (this.wide !== null) {
      wideLookup(this.wide, sector, sector + count, visit);
      return;
    }
    const n = this.count;
    const n32 = this.nodes32;
    const n64 = this.nodes64;
    const x = sector | 0;
    const askedEnd = sector + count;
    const end = askedEnd < this.limit ? askedEnd : this.limit;
    for (let i = this.packedFirstEndingAfter(x); i < n; i++) {
      const at = (i >>> 4) * NODE_I32 + (i & 15);
      const s = n32[at]!;
      if (s >= end) break;
      const meta = n32[at + META]!;
      const e = s + (meta >>> LENGTH_SHIFT);
      const from = s < x ? x : s;
      const to = e < end ? e : end;
      const moffset = n64[(i >>> 4) * NODE_F64 + MOFF + (i & 15)]!;
      if (meta & ZEROED_BIT) visit(from, to - from, moffset, true, meta & 0xff);
      else visit(from, to - from, moffset + (from - s), false, meta & 0xff);
    }
  }
}

function wideFirstEndingAfter(w: Extents, sector: number): number {
  const off = w.offset;
  const n = w.count;
  if (n === 0 || off[0]! > sector) return 0;
  let base = 0;
  let len = n;
  while (len > 1) {
    const half = len >>> 1;
    base = off[base + half]! <= sector ? base + half : base;
    len -= half;
  }
  return off[base]! + w.length[base]! > sector ? base : base + 1;
}

function wideLookup(w: Extents, sector: number, end: number, visit: MergedVisitor): void {
  const { offset: off, length: len, moffset, zeroed, tag } = w;
  const n = w.count;
  for (let i = wideFirstEndingAfter(w, sector); i < n; i++) {
    const s = off[i]!;
    if (s >= end) break;
    const e = s + len[i]!;
    const from = s < sector ? sector : s;
    const to = e > end ? end : e;
    const z = zeroed[i] === 1;
    visit(from, to - from, z ? moffset[i]! : moffset[i]! + (from - s), z, tag[i]!);
  }
}
