/**
 * Which parts of a cached blob hold valid data, and whether the whole blob has been verified
 * against its digest. Presence is tracked per page, a fixed fraction of the refill unit (up to
 * 64 pages a unit, never under 512 bytes), so a fetch of one refill unit need not sit on the
 * unit grid: a read straddling two units is served by one unit-sized fetch across the boundary.
 * Kept in memory as a bitmap and persisted in a small `.map` file beside the sparse data file:
 *
 *   0   8  magic "DADICMAP"
 *   8   4  version (2), u32 LE
 *   12  4  refill unit in bytes, u32 LE
 *   16  8  blob size in bytes, u64 LE
 *   24  4  flags, u32 LE: bit 0 = complete (sha256 of the data file verified equal to the digest)
 *   28  4  page size in bytes, u32 LE
 *   32  .. bitmap, bit (i % 8) of byte (i >> 3) = page i present
 *
 * Version 1 maps (one bit per unit, bytes 28..31 zero) are read and widened to pages.
 *
 * Durability rule (what makes a torn write harmless): a bit is set in memory only after its
 * page's data write completed, and `persist` snapshots the bits BEFORE syncing the data file, so
 * every bit that reaches the map file describes data already on disk. A torn map write can only
 * mix old and new bits, each of which is valid on its own.
 */
import { open, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

const MAGIC = 'DADICMAP';
const VERSION = 2;
const VERSION_UNIT_BITS = 1;
export const MAP_HEADER_SIZE = 32;
const FLAG_COMPLETE = 1;
const MAX_PAGES_PER_UNIT = 64;
const MIN_PAGE = 512;

/** The page size for a refill unit: the unit split in up to 64 equal parts of at least 512 bytes. */
export function pageSizeFor(unit: number): number {
  if (unit % MIN_PAGE !== 0) return unit;
  let parts = Math.min(MAX_PAGES_PER_UNIT, unit / MIN_PAGE);
  while (unit % parts !== 0 || (unit / parts) % MIN_PAGE !== 0) parts--;
  return unit / parts;
}

export class PresenceMap {
  readonly units: number;
  readonly page: number;
  readonly pages: number;
  readonly pagesPerUnit: number;
  readonly bits: Uint8Array;
  complete = false;
  /** Bytes of blob data the present pages hold (the last page may be short). */
  presentBytes = 0;

  constructor(readonly size: number, readonly unit: number) {
    this.units = Math.ceil(size / unit);
    this.page = pageSizeFor(unit);
    this.pagesPerUnit = unit / this.page;
    this.pages = Math.ceil(size / this.page);
    this.bits = new Uint8Array(Math.ceil(this.pages / 8));
  }

  hasPage(p: number): boolean {
    return (this.bits[p >> 3]! & (1 << (p & 7))) !== 0;
  }

  pageBytes(p: number): number {
    return Math.min(this.page, this.size - p * this.page);
  }

  /** True when pages first..last (inclusive) are all present. */
  pagesPresent(first: number, last: number): boolean {
    if (this.complete) return true;
    for (let p = first; p <= last; p++) if ((this.bits[p >> 3]! & (1 << (p & 7))) === 0) return false;
    return true;
  }

  /** True when every byte of [offset, end) is present (end > offset, both within the blob). */
  rangePresent(offset: number, end: number): boolean {
    return this.pagesPresent(Math.floor(offset / this.page), Math.floor((end - 1) / this.page));
  }

  /** True when the whole of unit i is present. */
  has(i: number): boolean {
    const first = i * this.pagesPerUnit;
    return this.pagesPresent(first, Math.min(this.pages, first + this.pagesPerUnit) - 1);
  }

  /** True when units first..last (inclusive) are all present. */
  allPresent(first: number, last: number): boolean {
    return this.pagesPresent(first * this.pagesPerUnit, Math.min(this.pages, (last + 1) * this.pagesPerUnit) - 1);
  }

  unitBytes(i: number): number {
    return Math.min(this.unit, this.size - i * this.unit);
  }

  /** Marks pages first..first+count-1 present; returns the bytes newly accounted. */
  setPages(first: number, count: number): number {
    let added = 0;
    for (let p = first; p < first + count; p++) {
      if (this.hasPage(p)) continue;
      this.bits[p >> 3]! |= 1 << (p & 7);
      added += this.pageBytes(p);
    }
    this.presentBytes += added;
    return added;
  }

  /** Marks unit i present; returns the bytes newly accounted (0 when it already was). */
  set(i: number): number {
    const first = i * this.pagesPerUnit;
    return this.setPages(first, Math.min(this.pages, first + this.pagesPerUnit) - first);
  }

  /** Forgets every page and the complete flag. */
  clear(): void {
    this.bits.fill(0);
    this.complete = false;
    this.presentBytes = 0;
  }

  markComplete(): void {
    this.bits.fill(0xff);
    this.complete = true;
    this.presentBytes = this.size;
  }

  /** The header and bitmap as they are stored in the map file (a copy: the snapshot to persist). */
  encode(): Buffer {
    const out = Buffer.alloc(MAP_HEADER_SIZE + this.bits.length);
    out.write(MAGIC, 0, 'latin1');
    out.writeUInt32LE(VERSION, 8);
    out.writeUInt32LE(this.unit, 12);
    out.writeBigUInt64LE(BigInt(this.size), 16);
    out.writeUInt32LE(this.complete ? FLAG_COMPLETE : 0, 24);
    out.writeUInt32LE(this.page, 28);
    out.set(this.bits, MAP_HEADER_SIZE);
    return out;
  }

  /**
   * Restores a map from the stored bytes, or returns undefined when they do not describe this
   * blob (wrong magic, version, unit, page or size, or a truncated file): the caller then starts empty.
   */
  static decode(bytes: Uint8Array, size: number, unit: number): PresenceMap | undefined {
    const map = new PresenceMap(size, unit);
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    if (b.length < MAP_HEADER_SIZE || b.toString('latin1', 0, 8) !== MAGIC) return undefined;
    const version = b.readUInt32LE(8);
    if (b.readUInt32LE(12) !== unit || b.readBigUInt64LE(16) !== BigInt(size)) return undefined;
    if (version === VERSION_UNIT_BITS) return decodeUnitBits(map, b);
    if (version !== VERSION || b.readUInt32LE(28) !== map.page) return undefined;
    if (b.length < MAP_HEADER_SIZE + map.bits.length) return undefined;
    if ((b.readUInt32LE(24) & FLAG_COMPLETE) !== 0) {
      map.markComplete();
      return map;
    }
    map.bits.set(b.subarray(MAP_HEADER_SIZE, MAP_HEADER_SIZE + map.bits.length));
    // Bits past the last page carry no meaning; clear them so counts stay exact.
    const tail = map.pages & 7;
    if (tail !== 0) map.bits[map.bits.length - 1]! &= (1 << tail) - 1;
    for (let p = 0; p < map.pages; p++) if (map.hasPage(p)) map.presentBytes += map.pageBytes(p);
    return map;
  }
}

/** A version 1 map: one bit per unit, widened here to the unit's pages. */
function decodeUnitBits(map: PresenceMap, b: Buffer): PresenceMap | undefined {
  if (b.length < MAP_HEADER_SIZE + Math.ceil(map.units / 8)) return undefined;
  if ((b.readUInt32LE(24) & FLAG_COMPLETE) !== 0) {
    map.markComplete();
    return map;
  }
  for (let u = 0; u < map.units; u++) {
    if ((b[MAP_HEADER_SIZE + (u >> 3)]! & (1 << (u & 7))) !== 0) map.set(u);
  }
  return map;
}

/** Reads the map file at `path`; undefined when it is missing or does not match the blob. */
export async function loadPresence(path: string, size: number, unit: number): Promise<PresenceMap | undefined> {
  const stored = await readMapFile(path, size, unit);
  return stored && PresenceMap.decode(stored, size, unit);
}

/**
 * The bytes of the map file at `path` (at most as many as a map of this blob has), or undefined
 * when there is no such file.
 */
export async function readMapFile(path: string, size: number, unit: number): Promise<Buffer | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = await fh.stat();
    const buf = Buffer.alloc(Math.min(st.size, MAP_HEADER_SIZE + Math.ceil(Math.ceil(size / pageSizeFor(unit)) / 8)));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Reads only the header of a map file: its blob size, unit, and how many bytes it holds. */
export async function readPresenceSummary(path: string): Promise<{ size: number; unit: number; presentBytes: number } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(MAP_HEADER_SIZE);
    const { bytesRead } = await fh.read(head, 0, MAP_HEADER_SIZE, 0);
    if (bytesRead < MAP_HEADER_SIZE || head.toString('latin1', 0, 8) !== MAGIC) return undefined;
    const size = Number(head.readBigUInt64LE(16));
    const unit = head.readUInt32LE(12);
    if (unit === 0 || !Number.isSafeInteger(size)) return undefined;
    // A bitmap longer than the file means a corrupt header: nothing is allocated for it.
    const bytesPerBit = head.readUInt32LE(8) === VERSION_UNIT_BITS ? unit : pageSizeFor(unit);
    const bitmapBytes = Math.ceil(Math.ceil(size / bytesPerBit) / 8);
    if ((await fh.stat()).size < MAP_HEADER_SIZE + bitmapBytes) return undefined;
    const rest = Buffer.alloc(bitmapBytes);
    const r = await fh.read(rest, 0, rest.length, MAP_HEADER_SIZE);
    const all = Buffer.concat([head, rest.subarray(0, r.bytesRead)]);
    const map = PresenceMap.decode(all, size, unit);
    return map ? { size, unit, presentBytes: map.presentBytes } : undefined;
  } finally {
    await fh.close();
  }
}

/** Suffix of a map file being replaced (see replaceMapFile); a leftover one is garbage. */
export const MAP_TEMP_SUFFIX = '.tmp';

/**
 * Replaces the whole map file at `mapPath` by `snapshot` (after syncing the data it describes)
 * through a temporary file and a rename, so a crash leaves the old map or the new one, never old
 * bits under a new header (a version or size change moves every bit). Returns the new file open
 * for the in-place updates of persistPresence.
 */
export async function replaceMapFile(mapPath: string, dataFile: FileHandle, snapshot: Buffer): Promise<FileHandle> {
  await dataFile.datasync();
  return writeThroughTemp(mapPath, snapshot, true);
}

/**
 * Creates the map file of a blob that had none, holding `snapshot` of an empty map, and returns
 * it open for persistPresence. Nothing is synced: an empty map claims no data, so whatever a
 * crash leaves of it (no file, an empty or short one, zero bits) is read back as an empty map.
 * The first persistPresence syncs it along with the bits it sets. This keeps fsyncs (tens of ms
 * on a busy disk) off the first open of a blob, which a container's start waits for.
 */
export function createMapFile(mapPath: string, snapshot: Buffer): Promise<FileHandle> {
  return writeThroughTemp(mapPath, snapshot, false);
}

/** Writes the map file through a temporary file and a rename (`durable`: both synced) and opens it for persistPresence. */
async function writeThroughTemp(mapPath: string, snapshot: Buffer, durable: boolean): Promise<FileHandle> {
  const temp = mapPath + MAP_TEMP_SUFFIX;
  const fh = await open(temp, 'w', 0o644);
  try {
    await fh.writeFile(snapshot);
    if (durable) await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(temp, mapPath);
  if (durable) {
    const dir = await open(dirname(mapPath), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
  return open(mapPath, 'r+');
}

/**
 * Writes `snapshot` (from `PresenceMap.encode`, taken before `dataFile` was synced) to the map
 * file durably, after syncing the data it describes.
 */
export async function persistPresence(mapFile: FileHandle, dataFile: FileHandle, snapshot: Buffer): Promise<void> {
  await dataFile.datasync();
  let done = 0;
  while (done < snapshot.length) {
    const { bytesWritten } = await mapFile.write(snapshot, done, snapshot.length - done, done);
    done += bytesWritten;
  }
  await mapFile.datasync();
}
