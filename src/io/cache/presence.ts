/**
 * Which refill units of a cached blob hold valid data, and whether the whole blob has been
 * verified against its digest. Kept in memory as a bitmap and persisted in a small `.map` file
 * beside the sparse data file:
 *
 *   0   8  magic "DADICMAP"
 *   8   4  version (1), u32 LE
 *   12  4  refill unit in bytes, u32 LE
 *   16  8  blob size in bytes, u64 LE
 *   24  4  flags, u32 LE: bit 0 = complete (sha256 of the data file verified equal to the digest)
 *   28  4  reserved (0)
 *   32  .. bitmap, bit (i % 8) of byte (i >> 3) = unit i present
 *
 * Durability rule (what makes a torn write harmless): a bit is set in memory only after its
 * unit's data write completed, and `persist` snapshots the bits BEFORE syncing the data file, so
 * every bit that reaches the map file describes data already on disk. A torn map write can only
 * mix old and new bits, each of which is valid on its own.
 */
import { open, type FileHandle } from 'node:fs/promises';

const MAGIC = 'DADICMAP';
const VERSION = 1;
export const MAP_HEADER_SIZE = 32;
const FLAG_COMPLETE = 1;

export class PresenceMap {
  readonly units: number;
  readonly bits: Uint8Array;
  complete = false;
  /** Bytes of blob data the present units hold (the last unit may be short). */
  presentBytes = 0;

  constructor(readonly size: number, readonly unit: number) {
    this.units = Math.ceil(size / unit);
    this.bits = new Uint8Array(Math.ceil(this.units / 8));
  }

  has(i: number): boolean {
    return (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  /** True when units first..last (inclusive) are all present. */
  allPresent(first: number, last: number): boolean {
    if (this.complete) return true;
    for (let i = first; i <= last; i++) if ((this.bits[i >> 3]! & (1 << (i & 7))) === 0) return false;
    return true;
  }

  unitBytes(i: number): number {
    return Math.min(this.unit, this.size - i * this.unit);
  }

  /** Marks unit i present; returns the bytes newly accounted (0 when it already was). */
  set(i: number): number {
    if (this.has(i)) return 0;
    this.bits[i >> 3]! |= 1 << (i & 7);
    const n = this.unitBytes(i);
    this.presentBytes += n;
    return n;
  }

  /** Forgets every unit and the complete flag. */
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
    out.set(this.bits, MAP_HEADER_SIZE);
    return out;
  }

  /**
   * Restores a map from the stored bytes, or returns undefined when they do not describe this
   * blob (wrong magic, version, unit or size, or a truncated file): the caller then starts empty.
   */
  static decode(bytes: Uint8Array, size: number, unit: number): PresenceMap | undefined {
    const map = new PresenceMap(size, unit);
    if (bytes.length < MAP_HEADER_SIZE + map.bits.length) return undefined;
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    if (b.toString('latin1', 0, 8) !== MAGIC || b.readUInt32LE(8) !== VERSION) return undefined;
    if (b.readUInt32LE(12) !== unit || b.readBigUInt64LE(16) !== BigInt(size)) return undefined;
    if ((b.readUInt32LE(24) & FLAG_COMPLETE) !== 0) {
      map.markComplete();
      return map;
    }
    map.bits.set(b.subarray(MAP_HEADER_SIZE, MAP_HEADER_SIZE + map.bits.length));
    // Bits past the last unit carry no meaning; clear them so counts stay exact.
    const tail = map.units & 7;
    if (tail !== 0) map.bits[map.bits.length - 1]! &= (1 << tail) - 1;
    for (let i = 0; i < map.units; i++) if (map.has(i)) map.presentBytes += map.unitBytes(i);
    return map;
  }
}

/** Reads the map file at `path`; undefined when it is missing or does not match the blob. */
export async function loadPresence(path: string, size: number, unit: number): Promise<PresenceMap | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = await fh.stat();
    const buf = Buffer.alloc(Math.min(st.size, MAP_HEADER_SIZE + Math.ceil(Math.ceil(size / unit) / 8)));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return PresenceMap.decode(buf.subarray(0, bytesRead), size, unit);
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
    const rest = Buffer.alloc(Math.ceil(Math.ceil(size / unit) / 8));
    const r = await fh.read(rest, 0, rest.length, MAP_HEADER_SIZE);
    const all = Buffer.concat([head, rest.subarray(0, r.bytesRead)]);
    const map = PresenceMap.decode(all, size, unit);
    return map ? { size, unit, presentBytes: map.presentBytes } : undefined;
  } finally {
    await fh.close();
  }
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
