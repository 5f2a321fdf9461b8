/**
 * The two interfaces every stage of the data path implements, so stages compose like nbdkit
 * filters: a cache wraps a source, a ZFile reader wraps a source, a layer stack is a disk.
 */

/** A random-access, read-only run of bytes: a file, a registry blob, a slice, a ZFile's payload. */
export interface ByteSource {
  readonly size: number;
  /**
   * Fills `dst` with the bytes at `offset`. Returns how many bytes were read; the count is short
   * only where the source ends. Errors (I/O, CRC, digest) reject; they never yield wrong bytes.
   */
  read(dst: Uint8Array, offset: number): Promise<number>;
  close(): Promise<void>;
  /** Optional human name (file path, URL) used in error messages. */
  readonly name?: string;
}

/** A virtual disk: what the NBD server, the converter and the snapshotter see. */
export interface Disk {
  readonly size: number;
  readonly writable: boolean;
  read(dst: Uint8Array, offset: number): Promise<void>;
  /** Rejects with an EROFS DiskError when the disk is read-only. */
  write(src: Uint8Array, offset: number): Promise<void>;
  /** Deallocates; the range then reads as zeros. */
  trim(offset: number, length: number): Promise<void>;
  /** Makes every acknowledged write durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional allocation map for NBD block status: the consecutive runs covering
   * [offset, offset+length), `zero` meaning a run reads as zeros and `hole` that it is unallocated.
   * The runs start at `offset` and are contiguous but may stop short of the end (a huge range is
   * answered in part, as NBD block status allows); callers ask again from where they stopped.
   */
  extents?(offset: number, length: number): Promise<DiskExtent[]>;
}

export interface DiskExtent {
  offset: number;
  length: number;
  /** Unallocated in every layer (reads as zeros). */
  hole: boolean;
  /** Reads as zeros (a hole or a zeroed extent). */
  zero: boolean;
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
