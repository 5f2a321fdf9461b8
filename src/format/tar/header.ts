/**
 * ustar header fields shared by the tar reader and writer (formats.md §4): field offsets,
 * checksum (unsigned and signed byte sums, the checksum field counted as spaces) and octal numbers.
 */
export const BLOCK = 512;
export const NAME = 0;
export const MODE = 100;
export const UID = 108;
export const GID = 116;
export const SIZE = 124;
export const MTIME = 136;
export const CHKSUM = 148;
export const TYPEFLAG = 156;
export const MAGIC = 257;
export const VERSION = 263;
export const UNAME = 265;
export const GNAME = 297;

/** Header sums with the 8-byte checksum field taken as spaces: [unsigned, signed]. */
export function checksums(h: Uint8Array): [number, number] {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= CHKSUM && i < CHKSUM + 8 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b >= 128 ? b - 256 : b;
  }
  return [unsigned, signed];
}

/**
 * Parses an octal numeric field: optional leading spaces, octal digits, then NUL/space
 * terminators. Returns undefined when the field is not of that shape (or is empty).
 */
export function parseOctal(h: Uint8Array, off: number, len: number): number | undefined {
  let i = off;
  const end = off + len;
  while (i < end && h[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  while (i < end && h[i]! >= 0x30 && h[i]! <= 0x37) {
    v = v * 8 + (h[i]! - 0x30);
    digits++;
    i++;
  }
  for (; i < end; i++) if (h[i] !== 0 && h[i] !== 0x20) return undefined;
  return digits === 0 ? undefined : v;
}

export function isUstarMagic(h: Uint8Array): boolean {
  return h.length >= BLOCK &&
    h[MAGIC] === 0x75 && h[MAGIC + 1] === 0x73 && h[MAGIC + 2] === 0x74 && h[MAGIC + 3] === 0x61 && h[MAGIC + 4] === 0x72 &&
    h[VERSION] === 0x30 && h[VERSION + 1] === 0x30;
}

/** Whether the stored checksum equals the unsigned or the signed byte sum. */
export function checksumValid(h: Uint8Array): boolean {
  const stored = parseOctal(h, CHKSUM, 8);
  if (stored === undefined) return false;
  const [u, s] = checksums(h);
  return stored === u || stored === s;
}
