/**
 * Reading the single-member tar wrapper around a layer blob (formats.md §4.3): the payload starts
 * at 512 (plain ustar) or 1536 (PAX header + one PAX data block + ustar header); its size is the
 * PAX `size` record when present, else the ustar size field.
 */
import { FormatError } from '../../errors.ts';
import { SliceSource } from '../../io/slice.ts';
import { readFully, type ByteSource } from '../../io/types.ts';
import { BLOCK, checksumValid, CHKSUM, isUstarMagic, parseOctal, SIZE, TYPEFLAG } from './header.ts';

/** Tar detection as upstream `is_tar_file`: magic `ustar` at 257, version `00`, valid checksum. */
export function isTar(head: Uint8Array): boolean {
  return isUstarMagic(head) && checksumValid(head);
}

const PAX_TYPES = new Set([0x78 /* x */, 0x67 /* g */]);

function checkHeader(h: Uint8Array, file: string, at: number): void {
  if (!isUstarMagic(h)) throw new FormatError(file, at + 257, 'tar: expected a ustar header (magic "ustar", version "00")');
  if (!checksumValid(h)) throw new FormatError(file, at + CHKSUM, 'tar: header checksum mismatch');
}

function headerSize(h: Uint8Array, file: string, at: number): number {
  const v = parseOctal(h, SIZE, 12);
  if (v === undefined) throw new FormatError(file, at + SIZE, 'tar: size field is not an octal number');
  return v;
}

/** Finds `size=<decimal>` in PAX records (`"<len> key=value\n"` each), validating the framing. */
function paxSize(data: Uint8Array, file: string, at: number): number | undefined {
  const text = Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
  let pos = 0;
  let size: number | undefined;
  while (pos < text.length) {
    const space = text.indexOf(' ', pos);
    const lenText = space < 0 ? '' : text.slice(pos, space);
    if (!/^[1-9][0-9]{0,9}$/.test(lenText)) throw new FormatError(file, at + pos, 'tar: malformed PAX record length');
    const recLen = Number(lenText);
    if (pos + recLen > text.length || text[pos + recLen - 1] !== '\n') {
      throw new FormatError(file, at + pos, 'tar: PAX record overruns its data or lacks its newline');
    }
    const record = text.slice(space + 1, pos + recLen - 1);
    const eq = record.indexOf('=');
    if (eq < 0) throw new FormatError(file, at + pos, 'tar: PAX record has no "="');
    if (record.slice(0, eq) === 'size') {
      const value = record.slice(eq + 1);
      if (!/^[0-9]{1,16}$/.test(value) || Number(value) > Number.MAX_SAFE_INTEGER) {
        throw new FormatError(file, at + pos, `tar: PAX size "${value}" is not a decimal number`);
      }
      size = Number(value);
    }
    pos += recLen;
  }
  return size;
}

/** The payload of the single member of a tar-wrapped blob, as a slice of `src`. */
export async function openTarPayload(src: ByteSource): Promise<ByteSource> {
  const { start, size } = await locateTarPayload(src);
  return new SliceSource(src, start, size, src.name ?? 'tar');
}

/**
 * Where the first member's payload is. Only the first member counts (as overlaybd reads it): dadi
 * appends a digest table member after it (digest-table.ts), which readers of the layer ignore.
 */
export async function locateTarPayload(src: ByteSource): Promise<{ start: number; size: number }> {
  const file = src.name ?? 'tar';
  const h = new Uint8Array(BLOCK);
  if (src.size < BLOCK) throw new FormatError(file, 0, `tar: truncated: ${src.size} bytes, less than one header`);
  await readFully(src, h, 0);
  checkHeader(h, file, 0);
  let start = BLOCK;
  let size: number;
  if (PAX_TYPES.has(h[TYPEFLAG]!)) {
    const paxLen = headerSize(h, file, 0);
    if (paxLen > BLOCK) throw new FormatError(file, SIZE, `tar: PAX data of ${paxLen} bytes does not fit the one block supported`);
    if (src.size < 3 * BLOCK) throw new FormatError(file, BLOCK, 'tar: truncated after the PAX header');
    const pax = new Uint8Array(BLOCK);
    await readFully(src, pax, BLOCK);
    const fromPax = paxSize(pax.subarray(0, paxLen), file, BLOCK);
    const u = new Uint8Array(BLOCK);
    await readFully(src, u, 2 * BLOCK);
    checkHeader(u, file, 2 * BLOCK);
    if (PAX_TYPES.has(u[TYPEFLAG]!)) throw new FormatError(file, 2 * BLOCK + TYPEFLAG, 'tar: a second PAX header is not supported');
    size = fromPax ?? headerSize(u, file, 2 * BLOCK);
    start = 3 * BLOCK;
  } else {
    size = headerSize(h, file, 0);
  }
  if (start + size > src.size) {
    throw new FormatError(file, start, `tar: member payload of ${size} bytes at ${start} runs past the end of the ${src.size}-byte file`);
  }
  return { start, size };
}
