/**
 * The shapes shared by the LSMT format code (format/lsmt) and the virtual disk (disk/).
 * All index units are 512-byte sectors, as on disk; byte offsets appear only at the edges.
 */
import type { ByteSource } from '../../io/types.ts';

export const SECTOR = 512;
/** Longest extent one index record can describe (14-bit length). */
export const MAX_EXTENT_SECTORS = 16383;
/** At most this many read-only layers in one stack. */
export const MAX_STACK_LAYERS = 255;

/**
 * A sorted, non-overlapping list of extents in struct-of-arrays form (no object per segment).
 * Entry i covers sectors [offset[i], offset[i] + length[i]) and, unless zeroed[i], its data is at
 * sector moffset[i] of the layer's data source. `tag` is free for the user (the merged index stores
 * the layer number there).
 */
export interface SegmentIndex {
  readonly count: number;
  readonly offset: Float64Array;
  readonly length: Uint32Array;
  readonly moffset: Float64Array;
  readonly zeroed: Uint8Array;
  readonly tag: Uint8Array;
}

/** The fields of an LSMT header or trailer. */
export interface LsmtHeaderFields {
  flags: number;
  indexOffset: number;
  indexSize: number;
  virtualSize: number;
  uuid: string;
  parentUuid: string;
  version: number;
  subVersion: number;
  userTag: string;
}

/** A read-only layer as the stack needs it: its index and where its data bytes are. */
export interface ReadOnlyLayer {
  readonly name: string;
  readonly virtualSize: number;
  readonly index: SegmentIndex;
  /** The (decompressed, un-tarred) LSMT file; extent data is at moffset * 512. */
  readonly data: ByteSource;
  readonly uuid: string;
  readonly parentUuid: string;
  close(): Promise<void>;
}

/** Visits one extent of a lookup: sectors [offset, offset+length), data at sector moffset unless zeroed. */
export type ExtentVisitor = (offset: number, length: number, moffset: number, zeroed: boolean) => void;

/**
 * The append-only writable layer as the stack needs it (format/lsmt implements it; disk/ stacks it).
 * Writes and trims must be 512-byte aligned; the stack does read-modify-write for unaligned I/O.
 */
export interface WritableLayer {
  readonly name: string;
  readonly uuid: string;
  readonly parentUuid: string;
  /** 0 means "take the size of the layers below". */
  readonly virtualSize: number;
  /** The data file; extent data is at moffset * 512. */
  readonly data: ByteSource;
  /** Visits, in LBA order, the live extents intersecting [sector, sector+count), trimmed to it. */
  lookup(sector: number, count: number, visit: ExtentVisitor): void;
  write(src: Uint8Array, byteOffset: number): Promise<void>;
  trim(byteOffset: number, length: number): Promise<void>;
  /** Makes every completed write and trim durable (data, then index). */
  flush(): Promise<void>;
  close(): Promise<void>;
}
