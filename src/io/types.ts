/**
 * The two interfaces every stage of the data path implements, so stages compose like nbdkit
 * filters: a cache wraps a source, a ZFile reader wraps a source, a layer stack is a disk.
 *
 * What a stage can do beyond the basic calls is DECLARED in `caps`, as nbdkit negotiates
 * can_write, can_trim, can_zero, can_fua, can_extents down a chain: callers consult the
 * declaration, never whether a method happens to exist, and a filter (see filter.ts) forwards
 * the declaration of the stage below it, so wrapping a stage never hides a capability by
 * accident. An optional method is present exactly when its capability is declared.
 */

/** Optional abilities of a ByteSource. */
export interface SourceCaps {
  /**
   * `readSync` completes on the calling thread (a local file whose pages are likely cached):
   * gathers of many small pieces (commit) avoid a thread-pool round trip per piece.
   */
  readonly readSync: boolean;
  /** `prefetch` brings a range into a cache below without returning it (read-ahead, trace replay). */
  readonly prefetch: boolean;
  /**
   * `readProgressive` says, while a read is in flight, how many leading bytes of `dst` have
   * arrived (an HTTP body), so a checker above hashes each chunk as soon as it is whole, while
   * the rest is still on the wire, instead of all of them after the last byte.
   */
  readonly progressive: boolean;
}

/** Who wants a prefetch: read-ahead of a stream, a replayed trace, a whole-blob fill. */
export type PrefetchKind = 'readahead' | 'trace' | 'background';

/** A random-access, read-only run of bytes: a file, a registry blob, a slice, a ZFile's payload. */
export interface ByteSource {
  readonly size: number;
  /** Optional human name (file path, URL) used in error messages. */
  readonly name?: string;
  readonly caps: SourceCaps;
  /**
   * Fills `dst` with the bytes at `offset`. Returns how many bytes were read; the count is short
   * only where the source ends. Errors (I/O, CRC, digest) reject; they never yield wrong bytes.
   */
  read(dst: Uint8Array, offset: number): Promise<number>;
  /**
   * Present when `caps.readSync`: like fs.readSync, up to `length` bytes at `position` into `dst`
   * from `dstOffset`; returns the count, short only at the end of the source.
   */
  readSync?(dst: Uint8Array, dstOffset: number, length: number, position: number): number;
  /**
   * Present when `caps.prefetch`: makes [offset, offset+length) local in a cache below; resolves
   * when it is (or when the cache gave up: a prefetch never fails a reader).
   */
  prefetch?(offset: number, length: number, kind: PrefetchKind): Promise<void>;
  /**
   * Present when `caps.progressive`: `read`, calling `onFilled(n)` whenever the first n bytes of
   * `dst` hold what this attempt received. An attempt starts with `onFilled(0)`: a retry rewrites
   * `dst` from the start, so whatever was checked of an earlier attempt no longer stands.
   */
  readProgressive?(dst: Uint8Array, offset: number, onFilled: (n: number) => void): Promise<number>;
  close(): Promise<void>;
}

/** Optional abilities of a Disk (the NBD server advertises exactly these). */
export interface DiskCaps {
  /** trim() deallocates (NBD TRIM). */
  readonly trim: boolean;
  /** Ranges can be zeroed efficiently (NBD WRITE_ZEROES). */
  readonly zero: boolean;
  /** A write can be made durable on its own (NBD FUA): write then flush. */
  readonly fua: boolean;
  /** `extents` reports the allocation map (NBD block status, sparse reads). */
  readonly extents: boolean;
  /** `readMapped` reads and reports the allocation map of the bytes read in one pass. */
  readonly readMapped: boolean;
}

/** A virtual disk: what the NBD server, the converter and the snapshotter see. */
export interface Disk {
  readonly size: number;
  readonly writable: boolean;
  readonly caps: DiskCaps;
  read(dst: Uint8Array, offset: number): Promise<void>;
  /** Rejects with an EROFS DiskError when the disk is read-only. */
  write(src: Uint8Array, offset: number): Promise<void>;
  /** Deallocates; the range then reads as zeros. */
  trim(offset: number, length: number): Promise<void>;
  /** Makes every acknowledged write durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Present when `caps.extents`: the consecutive runs covering [offset, offset+length), `zero`
   * meaning a run reads as zeros and `hole` that it is unallocated. The runs start at `offset`
   * and are contiguous but may stop short of the end (a huge range is answered in part, as NBD
   * block status allows); callers ask again from where they stopped.
   */
  extents?(offset: number, length: number): Promise<DiskExtent[]>;
  /** Present when `caps.readMapped`: read() plus the extents of exactly the bytes read. */
  readMapped?(dst: Uint8Array, offset: number): Promise<DiskExtent[]>;
}

export interface DiskExtent {
  offset: number;
  length: number;
  /** Unallocated in every layer (reads as zeros). */
  hole: boolean;
  /** Reads as zeros (a hole or a zeroed extent). */
  zero: boolean;
}

/** A source with nothing beyond read and close. */
export const PLAIN_SOURCE: SourceCaps = Object.freeze({ readSync: false, prefetch: false, progressive: false });

/** The capabilities of a disk that only reads and writes (writes imply trim, zero and FUA). */
export function basicDiskCaps(writable: boolean, extents = false): DiskCaps {
  return Object.freeze({ trim: writable, zero: writable, fua: writable, extents, readMapped: false });
}

export type SyncReadable = ByteSource & Required<Pick<ByteSource, 'readSync'>>;
export type Prefetchable = ByteSource & Required<Pick<ByteSource, 'prefetch'>>;
export type ProgressiveReadable = ByteSource & Required<Pick<ByteSource, 'readProgressive'>>;
export type ExtentsDisk = Disk & Required<Pick<Disk, 'extents'>>;
export type MappedDisk = Disk & Required<Pick<Disk, 'readMapped'>>;

export function canReadSync(s: ByteSource): s is SyncReadable {
  return s.caps.readSync;
}

export function canPrefetch(s: ByteSource): s is Prefetchable {
  return s.caps.prefetch;
}

export function canReadProgressive(s: ByteSource): s is ProgressiveReadable {
  return s.caps.progressive;
}

export function hasExtents(d: Disk): d is ExtentsDisk {
  return d.caps.extents;
}

export function canReadMapped(d: Disk): d is MappedDisk {
  return d.caps.readMapped;
}

/** Reads exactly dst.length bytes or rejects, naming the source. */
export async function readFully(src: ByteSource, dst: Uint8Array, offset: number): Promise<void> {
  const n = await src.read(dst, offset);
  if (n !== dst.length) {
    const { FormatError } = await import('../errors.ts');
    throw new FormatError(src.name ?? 'source', offset,
      `truncated: wanted ${dst.length} bytes, the source ends after ${n} (size ${src.size})`);
  }
}
