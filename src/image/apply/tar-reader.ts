/**
 * Reads tar entries with tar-stream and normalises each header into a LayerEntry: PAX overrides
 * tar-stream leaves alone (uid, gid, fractional mtime/atime) are applied, and PAX
 * `SCHILY.xattr.*` values are kept as raw bytes. tar-stream decodes PAX values as UTF-8 text,
 * which corrupts binary values such as security.capability, so the raw PAX record is also parsed
 * here through a hook on the extractor instance (tar-stream 3.x `_decodeLongHeader`).
 */
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { FormatError } from '../../errors.ts';

export type EntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'character-device' | 'block-device' | 'fifo';

export interface LayerEntry {
  /** The name exactly as the archive gives it (after PAX/GNU long-name records). */
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch; PAX may make it fractional. */
  mtime: number;
  /** The same, exactly, in nanoseconds (a double cannot hold a PAX mtime's nanoseconds). */
  mtimeNs: bigint;
  atime: number;
  linkname: string;
  size: number;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

export interface TarItem {
  entry: LayerEntry;
  /** The entry's data; must be consumed or drained before the next item is requested. */
  body: Readable;
}

const RAW_XATTRS = Symbol('dadi.rawXattrs');
const XATTR_PREFIX = 'SCHILY.xattr.';

interface ExtractInternals {
  _decodeLongHeader(this: ExtractInternals, buf: Buffer): void;
  _header: { type: string | null } | null;
  _pax: Record<string | symbol, unknown> | null;
}

/** The SCHILY.xattr.* records of one PAX extended header, values as raw bytes. */
export function parsePaxXattrs(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // NUL padding after the last record
    const space = buf.indexOf(0x20, pos);
    const len = space < 0 ? NaN : Number(buf.toString('latin1', pos, space));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw new Error(`malformed PAX record at byte ${pos} of the extended header`);
    }
    const record = buf.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 0) throw new Error(`PAX record without "=" at byte ${pos} of the extended header`);
    const key = record.toString('utf8', 0, eq);
    if (key.startsWith(XATTR_PREFIX)) out.set(key.slice(XATTR_PREFIX.length), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

function hookBinaryXattrs(extract: tar.Extract): void {
  const internals = extract as unknown as ExtractInternals;
  const original = internals._decodeLongHeader;
  if (typeof original !== 'function') {
    throw new Error('tar-stream internals changed (_decodeLongHeader is gone): binary PAX xattrs cannot be read safely');
  }
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer) {
    original.call(this, buf);
    if (this._header?.type === 'pax-header' && this._pax) this._pax[RAW_XATTRS] = parsePaxXattrs(buf);
  };
}

function paxNumber(pax: Record<string, string>, key: string, fallback: number, entry: string, label: string, offset: number): number {
  const v = pax[key];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new FormatError(label, offset, `entry ${JSON.stringify(entry)}: PAX ${key}=${JSON.stringify(v)} is not a number`);
  return n;
}

/** A PAX time ("1700000000.123456789") in nanoseconds, digits beyond the ninth dropped. */
function exactNs(v: string | undefined, fallbackSeconds: number): bigint {
  const m = v === undefined ? null : /^\s*(-?)(\d+)(?:\.(\d*))?\s*$/.exec(v);
  if (!m) return BigInt(Math.round(fallbackSeconds * 1e6)) * 1000n;
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  return m[1] === '-' ? -ns : ns;
}

function normalise(h: tar.Header, label: string): LayerEntry {
  const pax = (h.pax ?? {}) as Record<string, string> & { [RAW_XATTRS]?: Map<string, Buffer> };
  const offset = (h as { byteOffset?: number }).byteOffset ?? 0;
  const name = h.name;
  let type: EntryType;
  switch (h.type as string | null) {
    case 'file': case 'contiguous-file': type = 'file'; break;
    case 'link': type = 'hardlink'; break;
    case 'directory': case 'symlink': case 'character-device': case 'block-device': case 'fifo':
      type = h.type as EntryType; break;
    default:
      throw new FormatError(label, offset, `entry ${JSON.stringify(name)}: unsupported tar entry type (typeflag not one of file, link, symlink, device, directory, fifo)`);
  }
  if (Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) {
    throw new FormatError(label, offset, `entry ${JSON.stringify(name)}: GNU sparse files are not supported in layers`);
  }
  const mtime = paxNumber(pax, 'mtime', h.mtime.getTime() / 1000, name, label, offset);
  return {
    name,
    type,
    mode: h.mode & 0o7777,
    uid: paxNumber(pax, 'uid', h.uid, name, label, offset),
    gid: paxNumber(pax, 'gid', h.gid, name, label, offset),
    mtime,
    mtimeNs: exactNs(pax.mtime, mtime),
    atime: paxNumber(pax, 'atime', mtime, name, label, offset),
    linkname: h.linkname ?? '',
    size: h.size,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    xattrs: pax[RAW_XATTRS] ?? new Map(),
  };
}

/**
 * Iterates the entries of a plain tar stream. Corrupt or truncated archives (including one that
 * stops without an end-of-archive block) fail with a FormatError naming `label` and the offset;
 * `asFormatError` turns an error met while reading an entry's body into the same form.
 */
export class TarReader {
  private fed = 0;
  private lastName = '';
  /** A failure of the decompressor or input: the real cause behind "stream destroyed" downstream. */
  private sourceError: unknown = null;

  constructor(private readonly source: Readable, private readonly label: string) {
    source.on('data', (chunk: Buffer) => { this.fed += chunk.length; });
    source.on('error', (err) => { this.sourceError ??= err; });
  }

  private where(): string {
    return this.lastName === '' ? 'before the first entry' : `in or after entry ${JSON.stringify(this.lastName)}`;
  }

  asFormatError(err: unknown): FormatError {
    if (err instanceof FormatError) return err;
    const cause = this.sourceError ?? err;
    const msg = cause instanceof Error ? cause.message : String(cause);
    return new FormatError(this.label, this.fed, `corrupt or truncated layer ${this.where()}: ${msg}`);
  }

  async *entries(): AsyncGenerator<TarItem> {
    const extract = tar.extract({ allowUnknownFormat: true } as Parameters<typeof tar.extract>[0]);
    hookBinaryXattrs(extract);
    const source = this.source;
    let lastEnd = 0;
    source.on('error', (err) => extract.destroy(err));
    source.pipe(extract as unknown as NodeJS.WritableStream);
    try {
      for await (const body of extract) {
        const h = body.header;
        const start = (h as { byteOffset?: number }).byteOffset ?? this.fed;
        const entry = normalise(h, this.label);
        this.lastName = entry.name;
        lastEnd = start + (h.type === 'directory' ? 0 : Math.ceil(h.size / 512) * 512);
        yield { entry, body: body as unknown as Readable };
      }
    } catch (err) {
      throw this.asFormatError(err);
    } finally {
      source.unpipe(extract as unknown as NodeJS.WritableStream);
      extract.destroy();
      source.destroy();
    }
    if (this.fed < lastEnd + 512) {
      throw new FormatError(this.label, this.fed, `truncated layer ${this.where()}: the archive ends without an end-of-archive block`);
    }
  }
}
