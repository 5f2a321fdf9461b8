/**
 * The 4096-byte LSMT header / trailer (formats.md §2.2–2.4). The same struct serves as header (at
 * offset 0) and trailer (at EOF − 4096); only the flags tell them apart.
 */
import { FormatError } from '../../errors.ts';
import type { LsmtHeaderFields } from './types.ts';

export const HT_SPACE = 4096;
export const HT_STRUCT_SIZE = 390;
/** First data sector of a layer file: the header occupies sectors 0–7. */
export const FIRST_DATA_SECTOR = HT_SPACE / 512;

export const FLAG_HEADER = 1 << 0;
export const FLAG_TYPE_DATA = 1 << 1;
export const FLAG_SEALED = 1 << 2;
export const FLAG_SPARSE_RW = 1 << 4;

export const NULL_UUID = '00000000-0000-0000-0000-000000000000';
export const USER_TAG_MAX = 256;

const MAGIC0 = Uint8Array.of(0x4c, 0x53, 0x4d, 0x54, 0x00, 0x01, 0x02, 0x00);
const MAGIC1 = Uint8Array.of(0x65, 0x7e, 0x63, 0xd2, 0x94, 0x44, 0x08, 0x4c, 0xa2, 0xd2, 0xc8, 0xec, 0x4f, 0xcf, 0xae, 0x8a);
const OFF_SIZE = 24;
const OFF_FLAGS = 28;
const OFF_INDEX_OFFSET = 32;
const OFF_INDEX_SIZE = 40;
const OFF_VSIZE = 48;
const OFF_UUID = 56;
const OFF_PARENT = 93;
const UUID_FIELD = 37;
const OFF_VERSION = 132;
const OFF_SUB_VERSION = 133;
const OFF_TAG = 134;

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Normalises a UUID to the stored form (upper-case); '' or undefined mean the null UUID. */
export function normalizeUuid(uuid: string | undefined): string {
  if (uuid === undefined || uuid === '') return NULL_UUID;
  if (!UUID_RE.test(uuid)) throw new Error(`invalid UUID "${uuid}": expected 8-4-4-4-12 hex digits`);
  return uuid.toUpperCase();
}

export function isNullUuid(uuid: string): boolean {
  return uuid === '' || uuid === NULL_UUID;
}

/** True when the two magics are present (what upstream checks before anything else). */
export function hasLsmtMagic(b: Uint8Array): boolean {
  if (b.length < 24) return false;
  for (let i = 0; i < 8; i++) if (b[i] !== MAGIC0[i]) return false;
  for (let i = 0; i < 16; i++) if (b[8 + i] !== MAGIC1[i]) return false;
  return true;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function readU64(dv: DataView, off: number, file: string, base: number, what: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(file, base + off, `${what} ${v} is too large`);
  return Number(v);
}

function readCString(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + off, end - off).toString('utf8');
}

function writeCString(b: Uint8Array, off: number, len: number, s: string, what: string): void {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length > len) throw new Error(`${what} is ${bytes.length} bytes; at most ${len} fit`);
  b.set(bytes, off);
}

/**
 * Decodes a header or trailer. Checks only the magics (the caller decides which flags it needs);
 * `base` is the block's offset in `file`, for error messages.
 */
export function decodeHeader(b: Uint8Array, file: string, base: number, what = 'header'): LsmtHeaderFields {
  if (b.length < HT_STRUCT_SIZE) throw new FormatError(file, base, `${what}: truncated (${b.length} bytes)`);
  if (!hasLsmtMagic(b)) throw new FormatError(file, base, `${what}: LSMT magic not found`);
  const dv = view(b);
  return {
    flags: dv.getUint32(OFF_FLAGS, true),
    indexOffset: readU64(dv, OFF_INDEX_OFFSET, file, base, `${what} index_offset`),
    indexSize: readU64(dv, OFF_INDEX_SIZE, file, base, `${what} index_size`),
    virtualSize: readU64(dv, OFF_VSIZE, file, base, `${what} virtual_size`),
    uuid: readCString(b, OFF_UUID, UUID_FIELD),
    parentUuid: readCString(b, OFF_PARENT, UUID_FIELD),
    version: b[OFF_VERSION]!,
    subVersion: b[OFF_SUB_VERSION]!,
    userTag: readCString(b, OFF_TAG, USER_TAG_MAX),
  };
}

/** Encodes a 4096-byte header/trailer block. UUIDs are normalised to upper case (null → zeros). */
export function encodeHeader(f: LsmtHeaderFields): Uint8Array {
  const b = new Uint8Array(HT_SPACE);
  const dv = view(b);
  b.set(MAGIC0, 0);
  b.set(MAGIC1, 8);
  dv.setUint32(OFF_SIZE, HT_STRUCT_SIZE, true);
  dv.setUint32(OFF_FLAGS, f.flags >>> 0, true);
  dv.setBigUint64(OFF_INDEX_OFFSET, BigInt(f.indexOffset), true);
  dv.setBigUint64(OFF_INDEX_SIZE, BigInt(f.indexSize), true);
  dv.setBigUint64(OFF_VSIZE, BigInt(f.virtualSize), true);
  writeCString(b, OFF_UUID, UUID_FIELD - 1, normalizeUuid(f.uuid), 'uuid');
  writeCString(b, OFF_PARENT, UUID_FIELD - 1, normalizeUuid(f.parentUuid), 'parent uuid');
  b[OFF_VERSION] = f.version;
  b[OFF_SUB_VERSION] = f.subVersion;
  writeCString(b, OFF_TAG, USER_TAG_MAX, f.userTag, 'user tag (commit message)');
  return b;
}

/** Header fields with the defaults every writer uses (version 1.1, null uuids, empty tag). */
export function headerFields(p: Partial<LsmtHeaderFields> & { flags: number }): LsmtHeaderFields {
  return {
    flags: p.flags,
    indexOffset: p.indexOffset ?? 0,
    indexSize: p.indexSize ?? 0,
    virtualSize: p.virtualSize ?? 0,
    uuid: normalizeUuid(p.uuid),
    parentUuid: normalizeUuid(p.parentUuid),
    version: p.version ?? 1,
    subVersion: p.subVersion ?? 1,
    userTag: p.userTag ?? '',
  };
}

export function flagNames(flags: number): string[] {
  const names: string[] = [];
  names.push(flags & FLAG_HEADER ? 'header' : 'trailer');
  names.push(flags & FLAG_TYPE_DATA ? 'data' : 'index');
  if (flags & FLAG_SEALED) names.push('sealed');
  if (flags & FLAG_SPARSE_RW) names.push('sparse');
  return names;
}
