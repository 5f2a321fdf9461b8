/**
 * Extended attributes in ext4's two places: the space after an inode's extra fields, and one
 * external block (refcounted, hashed, checksummed). Names are stored as a prefix index plus the
 * rest; POSIX ACLs are converted between the VFS form tar carries and ext4's compact disk form.
 */
import { FormatError } from '../../errors.ts';
import { ext4Crc } from './layout.ts';

export const XATTR_MAGIC = 0xea020000;
const BLOCK_HEADER = 32;
const ENTRY_HEADER = 16;

const PREFIXES: Array<[number, string]> = [
  [2, 'system.posix_acl_access'], [3, 'system.posix_acl_default'], [8, 'system.richacl'],
  [1, 'user.'], [4, 'trusted.'], [6, 'security.'], [7, 'system.'],
];
const FULL_NAME_INDEXES = new Set([2, 3, 8]);

export type Xattrs = Map<string, Uint8Array>;

interface Encoded { index: number; suffix: Uint8Array; value: Uint8Array; fullName: string }

function splitName(name: string): { index: number; suffix: Uint8Array } {
  for (const [index, prefix] of PREFIXES) {
    if (FULL_NAME_INDEXES.has(index) ? name === prefix : name.startsWith(prefix) && name.length > prefix.length) {
      return { index, suffix: Buffer.from(FULL_NAME_INDEXES.has(index) ? '' : name.slice(prefix.length), 'utf8') };
    }
  }
  throw new Error(`xattr ${JSON.stringify(name)} has no namespace ext4 can store (user., trusted., security., system.)`);
}

function joinName(index: number, suffix: Uint8Array): string {
  const prefix = PREFIXES.find(([i]) => i === index)?.[1];
  if (prefix === undefined) return `unknown${index}.${Buffer.from(suffix).toString('utf8')}`;
  return FULL_NAME_INDEXES.has(index) ? prefix : prefix + Buffer.from(suffix).toString('utf8');
}

const ACL_VFS_VERSION = 2;
const ACL_DISK_VERSION = 1;
const SHORT_TAGS = new Set([0x01, 0x04, 0x10, 0x20]); // USER_OBJ, GROUP_OBJ, MASK, OTHER

/** VFS ACL (version 2, 8-byte entries) to ext4's disk form (version 1, 4-byte entries for ids-less tags). */
export function aclToDisk(vfs: Uint8Array): Uint8Array {
  const v = new DataView(vfs.buffer, vfs.byteOffset, vfs.length);
  if (vfs.length < 4 || (vfs.length - 4) % 8 !== 0 || v.getUint32(0, true) !== ACL_VFS_VERSION) throw new Error('POSIX ACL xattr is not a version 2 ACL');
  const out = new Uint8Array(4 + ((vfs.length - 4) / 8) * 8);
  const o = new DataView(out.buffer);
  o.setUint32(0, ACL_DISK_VERSION, true);
  let at = 4;
  for (let i = 4; i < vfs.length; i += 8) {
    const tag = v.getUint16(i, true);
    o.setUint16(at, tag, true);
    o.setUint16(at + 2, v.getUint16(i + 2, true), true);
    if (SHORT_TAGS.has(tag)) at += 4;
    else { o.setUint32(at + 4, v.getUint32(i + 4, true), true); at += 8; }
  }
  return out.slice(0, at);
}

export function aclFromDisk(disk: Uint8Array): Uint8Array {
  const v = new DataView(disk.buffer, disk.byteOffset, disk.length);
  if (disk.length < 4 || v.getUint32(0, true) !== ACL_DISK_VERSION) return disk;
  const entries: Array<[number, number, number]> = [];
  for (let at = 4; at + 4 <= disk.length;) {
    const tag = v.getUint16(at, true);
    const perm = v.getUint16(at + 2, true);
    if (SHORT_TAGS.has(tag)) { entries.push([tag, perm, 0xffffffff]); at += 4; } else { entries.push([tag, perm, v.getUint32(at + 4, true)]); at += 8; }
  }
  const out = new Uint8Array(4 + entries.length * 8);
  const o = new DataView(out.buffer);
  o.setUint32(0, ACL_VFS_VERSION, true);
  entries.forEach(([tag, perm, id], i) => { o.setUint16(4 + i * 8, tag, true); o.setUint16(6 + i * 8, perm, true); o.setUint32(8 + i * 8, id, true); });
  return out;
}

function entryHash(suffix: Uint8Array, value: Uint8Array): number {
  let hash = 0;
  for (const c of suffix) hash = ((hash << 5) ^ (hash >>> 27) ^ ((c << 24) >> 24)) >>> 0;
  const padded = new Uint8Array((value.length + 3) & ~3);
  padded.set(value);
  const v = new DataView(padded.buffer);
  for (let i = 0; i < padded.length; i += 4) hash = ((hash << 16) ^ (hash >>> 16) ^ v.getUint32(i, true)) >>> 0;
  return hash;
}

function encodeAll(attrs: Xattrs): Encoded[] {
  const list = [...attrs].map(([fullName, value]) => {
    const { index, suffix } = splitName(fullName);
    if (suffix.length > 255) throw new Error(`xattr name ${JSON.stringify(fullName)} is longer than 255 bytes`);
    return { index, suffix, value: index === 2 || index === 3 ? aclToDisk(value) : value, fullName };
  });
  // The kernel's order for block entries: index, then name length, then name.
  list.sort((a, b) => a.index - b.index || a.suffix.length - b.suffix.length || Buffer.compare(a.suffix, b.suffix));
  return list;
}

function spaceFor(list: Encoded[]): number {
  let n = 4; // terminating zero word
  for (const e of list) n += ((ENTRY_HEADER + e.suffix.length + 3) & ~3) + ((e.value.length + 3) & ~3);
  return n;
}

/** Writes entries from `entriesAt`, values packed down from `end`; value offsets relative to `base`. */
function layout(buf: Uint8Array, list: Encoded[], entriesAt: number, end: number, base: number, hashes: boolean): number[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let at = entriesAt;
  let valueEnd = end;
  const out: number[] = [];
  for (const e of list) {
    valueEnd -= (e.value.length + 3) & ~3;
    buf.set(e.value, valueEnd);
    const hash = hashes ? entryHash(e.suffix, e.value) : 0;
    buf[at] = e.suffix.length;
    buf[at + 1] = e.index;
    v.setUint16(at + 2, e.value.length === 0 ? 0 : valueEnd - base, true);
    v.setUint32(at + 4, 0, true);
    v.setUint32(at + 8, e.value.length, true);
    v.setUint32(at + 12, hash, true);
    buf.set(e.suffix, at + ENTRY_HEADER);
    at += (ENTRY_HEADER + e.suffix.length + 3) & ~3;
    out.push(hash);
  }
  if (at + 4 > valueEnd) throw new Error('ext4: xattrs overflow their area');
  return out;
}

/**
 * The in-inode area for `attrs` when they all fit in `areaSize` bytes, else null (they then go to
 * a block). An empty map gives an empty area.
 */
export function encodeInlineXattrs(attrs: Xattrs, areaSize: number): Uint8Array | null {
  if (attrs.size === 0) return new Uint8Array(0);
  const list = encodeAll(attrs);
  if (4 + spaceFor(list) > areaSize) return null;
  const buf = new Uint8Array(areaSize);
  new DataView(buf.buffer).setUint32(0, XATTR_MAGIC, true);
  layout(buf, list, 4, areaSize, 4, true);
  return buf;
}

/** Whether `attrs` fit one block of `bs` bytes. */
export function fitsXattrBlock(attrs: Xattrs, bs: number): boolean {
  return BLOCK_HEADER + spaceFor(encodeAll(attrs)) <= bs;
}

/** An external xattr block for `attrs` (refcount 1), checksummed for block number `block`. */
export function encodeXattrBlock(attrs: Xattrs, bs: number, block: number, csumSeed: number | undefined): Uint8Array {
  const list = encodeAll(attrs);
  if (BLOCK_HEADER + spaceFor(list) > bs) throw new Error(`xattrs (${list.map((e) => e.fullName).join(', ')}) do not fit one ${bs}-byte block`);
  const buf = new Uint8Array(bs);
  const v = new DataView(buf.buffer);
  v.setUint32(0, XATTR_MAGIC, true);
  v.setUint32(4, 1, true);
  v.setUint32(8, 1, true);
  const hashes = layout(buf, list, BLOCK_HEADER, bs, 0, true);
  let hash = 0;
  for (const h of hashes) hash = ((hash << 16) ^ (hash >>> 16) ^ h) >>> 0;
  v.setUint32(12, hash, true);
  if (csumSeed !== undefined) v.setUint32(16, xattrBlockCsum(buf, block, csumSeed), true);
  return buf;
}

export function xattrBlockCsum(buf: Uint8Array, block: number, csumSeed: number): number {
  const nr = new Uint8Array(8);
  const nv = new DataView(nr.buffer);
  nv.setUint32(0, block % 2 ** 32, true);
  nv.setUint32(4, Math.floor(block / 2 ** 32), true);
  const copy = buf.slice();
  new DataView(copy.buffer).setUint32(16, 0, true);
  return ext4Crc(ext4Crc(csumSeed, nr), copy);
}

function decodeEntries(buf: Uint8Array, entriesAt: number, base: number, name: string, where: number, out: Xattrs): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
  for (let at = entriesAt; at + 4 <= buf.length && v.getUint32(at, true) !== 0;) {
    if (at + ENTRY_HEADER > buf.length) throw new FormatError(name, where + at, 'xattr entry overruns its area');
    const nameLen = buf[at]!;
    const index = buf[at + 1]!;
    const valueOffs = v.getUint16(at + 2, true);
    const valueInum = v.getUint32(at + 4, true);
    const valueSize = v.getUint32(at + 8, true);
    if (valueInum !== 0) throw new FormatError(name, where + at, 'xattr values in separate inodes (ea_inode) are not supported');
    const suffix = buf.subarray(at + ENTRY_HEADER, at + ENTRY_HEADER + nameLen);
    if (base + valueOffs + valueSize > buf.length || at + ENTRY_HEADER + nameLen > buf.length) {
      throw new FormatError(name, where + at, `xattr value (${valueSize} bytes at ${valueOffs}) lies outside its area`);
    }
    const raw = buf.slice(base + valueOffs, base + valueOffs + valueSize);
    const full = joinName(index, suffix);
    out.set(full, index === 2 || index === 3 ? aclFromDisk(raw) : raw);
    at += (ENTRY_HEADER + nameLen + 3) & ~3;
  }
}

/** Attributes of the in-inode area (empty or without the magic: none). */
export function decodeInlineXattrs(area: Uint8Array, name: string, where: number, out: Xattrs = new Map()): Xattrs {
  if (area.length < 4 || new DataView(area.buffer, area.byteOffset, 4).getUint32(0, true) !== XATTR_MAGIC) return out;
  decodeEntries(area, 4, 4, name, where, out);
  return out;
}

/** Attributes of an external block, checking its magic and (with metadata_csum) its checksum. */
export function decodeXattrBlock(buf: Uint8Array, block: number, csumSeed: number | undefined, name: string, out: Xattrs = new Map()): Xattrs {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const where = block * buf.length;
  if (v.getUint32(0, true) !== XATTR_MAGIC) throw new FormatError(name, where, 'xattr block magic 0xEA020000 missing');
  if (csumSeed !== undefined && v.getUint32(16, true) !== xattrBlockCsum(buf, block, csumSeed)) {
    throw new FormatError(name, where, 'xattr block checksum does not match its contents');
  }
  decodeEntries(buf, BLOCK_HEADER, 0, name, where, out);
  return out;
}

/** The reference count of an external xattr block. */
export function xattrBlockRefcount(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.length).getUint32(4, true);
}
