/**
 * Directory blocks: parsed into entries and written back packed. Any directory reads linearly,
 * htree-indexed ones included: the index root hides behind the ".." entry's length and index
 * nodes behind an empty entry spanning the block, so a linear walk sees exactly the names. With
 * metadata_csum a leaf block ends in a 12-byte tail entry holding its checksum.
 */
import { FormatError } from '../../errors.ts';
import { ext4Crc } from './layout.ts';

export interface DirEntry {
  ino: number;
  /** Raw name bytes (ext4 names are bytes; dadi treats them as UTF-8). */
  name: Uint8Array;
  fileType: number;
}

export const DIRENT_TAIL = 12;
const TAIL_FILE_TYPE = 0xde;

export function recLenFor(nameLength: number): number {
  return (8 + nameLength + 3) & ~3;
}

function hasTail(buf: Uint8Array, bs: number): boolean {
  const v = new DataView(buf.buffer, buf.byteOffset + bs - DIRENT_TAIL, DIRENT_TAIL);
  return v.getUint32(0, true) === 0 && v.getUint16(4, true) === DIRENT_TAIL && buf[bs - DIRENT_TAIL + 6] === 0 && buf[bs - DIRENT_TAIL + 7] === TAIL_FILE_TYPE;
}

/**
 * The live entries of one directory block. `seed` (the directory's checksum seed) verifies the
 * tail when the block has one; htree blocks (whose tails differ) pass `seed` undefined.
 */
export function parseDirBlock(buf: Uint8Array, bs: number, name: string, where: number, seed?: number): DirEntry[] {
  const v = new DataView(buf.buffer, buf.byteOffset, bs);
  const out: DirEntry[] = [];
  const tail = seed !== undefined && hasTail(buf, bs);
  if (tail) {
    const want = v.getUint32(bs - 4, true);
    const got = ext4Crc(seed!, buf.subarray(0, bs - DIRENT_TAIL));
    if (want !== got) throw new FormatError(name, where, `directory block checksum 0x${want.toString(16)} does not match its entries`);
  }
  const end = tail ? bs - DIRENT_TAIL : bs;
  for (let at = 0; at < end;) {
    const ino = v.getUint32(at, true);
    const recLen = v.getUint16(at + 4, true);
    const nameLen = buf[at + 6]!;
    if (recLen < 8 || recLen % 4 !== 0 || at + recLen > bs || (ino !== 0 && 8 + nameLen > recLen)) {
      throw new FormatError(name, where + at, `corrupt directory entry (record length ${recLen}, name length ${nameLen})`);
    }
    if (ino !== 0) out.push({ ino, name: buf.slice(at + 8, at + 8 + nameLen), fileType: buf[at + 7]! });
    at += recLen;
  }
  return out;
}

/** Bytes `entries` take packed in a block. */
export function packedSize(entries: readonly DirEntry[]): number {
  let n = 0;
  for (const e of entries) n += recLenFor(e.name.length);
  return n;
}

/**
 * Packs `entries` into `out` (one block): each record its minimal length, the last stretched to
 * the tail (or the block end), then the checksum tail when `seed` is given. An empty list gives
 * the empty record a new directory block holds.
 */
export function writeDirBlock(out: Uint8Array, bs: number, entries: readonly DirEntry[], seed: number | undefined): void {
  out.fill(0, 0, bs);
  const v = new DataView(out.buffer, out.byteOffset, bs);
  const end = seed !== undefined ? bs - DIRENT_TAIL : bs;
  let at = 0;
  if (entries.length === 0) {
    v.setUint32(0, 0, true);
    v.setUint16(4, end, true);
  }
  entries.forEach((e, i) => {
    const len = i === entries.length - 1 ? end - at : recLenFor(e.name.length);
    v.setUint32(at, e.ino, true);
    v.setUint16(at + 4, len, true);
    out[at + 6] = e.name.length;
    out[at + 7] = e.fileType;
    out.set(e.name, at + 8);
    at += len;
  });
  if (at > end) throw new Error(`ext4: directory entries overflow their block (${at} > ${end})`);
  if (seed !== undefined) {
    v.setUint32(end, 0, true);
    v.setUint16(end + 4, DIRENT_TAIL, true);
    out[end + 6] = 0;
    out[end + 7] = TAIL_FILE_TYPE;
    v.setUint32(bs - 4, ext4Crc(seed, out.subarray(0, end)), true);
  }
}
