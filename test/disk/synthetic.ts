/**
 * Synthetic read-only layers for disk tests: an index built from plain extent lists and a data
 * source in memory, so stack logic is tested without depending on the LSMT file code.
 */
import type { ReadOnlyLayer, SegmentIndex } from '../../src/format/lsmt/types.ts';
import type { ByteSource } from '../../src/io/types.ts';
import { MemorySource } from '../../src/io/memory.ts';

export interface PlainExtent { offset: number; length: number; moffset: number; zeroed: boolean }

export function segmentIndex(extents: readonly PlainExtent[]): SegmentIndex {
  const n = extents.length;
  const idx = {
    count: n,
    offset: new Float64Array(n),
    length: new Uint32Array(n),
    moffset: new Float64Array(n),
    zeroed: new Uint8Array(n),
    tag: new Uint8Array(n),
  };
  extents.forEach((e, i) => {
    idx.offset[i] = e.offset;
    idx.length[i] = e.length;
    idx.moffset[i] = e.moffset;
    idx.zeroed[i] = e.zeroed ? 1 : 0;
  });
  return idx;
}

/** Sorts candidate extents and drops those overlapping an earlier one: a valid layer index. */
export function normalise(cands: readonly PlainExtent[]): PlainExtent[] {
  const sorted = [...cands].filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: PlainExtent[] = [];
  let end = -1;
  for (const e of sorted) {
    if (e.offset < end) continue;
    out.push(e);
    end = e.offset + e.length;
  }
  return out;
}

export class SyntheticLayer implements ReadOnlyLayer {
  readonly index: SegmentIndex;
  readonly uuid = '';
  readonly parentUuid = '';
  closed = false;
  constructor(readonly name: string, readonly virtualSize: number, extents: readonly PlainExtent[], readonly data: ByteSource) {
    this.index = segmentIndex(extents);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A layer whose data extents hold a deterministic pattern: byte b of data sector m is
 * (m * 31 + b * 7 + seed) & 255, with data sectors numbered from moffset 0.
 */
export function patternLayer(name: string, virtualSize: number, extents: readonly PlainExtent[], seed: number): { layer: SyntheticLayer; bytes: Uint8Array } {
  let maxSector = 0;
  for (const e of extents) if (!e.zeroed) maxSector = Math.max(maxSector, e.moffset + e.length);
  const bytes = new Uint8Array(maxSector * 512);
  for (let m = 0; m < maxSector; m++) {
    for (let b = 0; b < 512; b++) bytes[m * 512 + b] = (m * 31 + b * 7 + seed) & 255;
  }
  return { layer: new SyntheticLayer(name, virtualSize, extents, new MemorySource(bytes, `${name}.data`)), bytes };
}
