/**
 * Wrapping a blob in the single-member tar the C++ tools write (formats.md §4.1), so stock
 * containerd can unpack it as `overlaybd.commit` while dadi reads it lazily at offset 1536:
 * [PAX header `overlaybd.pax`][PAX data "<len> size=<N>\n"][ustar header, size 0][payload][pad][2 zero blocks].
 * The size is only known at the end, so a placeholder header (not a valid tar) is written first
 * and rewritten on close; an interrupted write therefore never looks like a finished tar.
 */
import type { Sink } from '../../io/sink.ts';
import { BLOCK, checksums, CHKSUM, GID, GNAME, MAGIC, MODE, NAME, SIZE, MTIME, TYPEFLAG, UID, UNAME, VERSION } from './header.ts';

export const TAR_PAYLOAD_OFFSET = 3 * BLOCK;
const MEMBER_NAME = 'overlaybd.commit';
const PAX_NAME = 'overlaybd.pax';
const REGULAR_FILE_MODE = 0o100644;

function put(h: Uint8Array, off: number, text: string): void {
  for (let i = 0; i < text.length; i++) h[off + i] = text.charCodeAt(i);
}

/** Right-aligned, space-padded octal of `width` digits, then the given terminator (C `%<w>o`). */
function octal(n: number, width: number): string {
  return n.toString(8).padStart(width, ' ');
}

function seal(h: Uint8Array): void {
  const [sum] = checksums(h);
  put(h, CHKSUM, `${octal(sum, 6)} \0`);
}

/**
 * A ustar header of a regular file as overlaybd's tools write it (owner root, mtime 0, octal
 * fields space-padded), sealed with its checksum: the wrapper's member and dadi's extra members.
 */
export function writeRegularFileHeader(h: Uint8Array, name: string, mode: number, size: number): void {
  put(h, NAME, name);
  put(h, MODE, `${octal(mode, 6)} \0`);
  put(h, UID, `${octal(0, 6)} \0`);
  put(h, GID, `${octal(0, 6)} \0`);
  put(h, SIZE, `${octal(size, 11)} `);
  put(h, MTIME, `${octal(0, 11)} `);
  h[TYPEFLAG] = 0x30; // '0'
  put(h, MAGIC, 'ustar\0');
  put(h, VERSION, '00');
  put(h, UNAME, 'root');
  put(h, GNAME, 'root');
  seal(h);
}

/** `"<len> size=<n>\n"` where <len> counts the whole record, its own digits included. */
export function paxSizeRecord(n: number): string {
  const body = ` size=${n}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
}

/** The 1536 bytes in front of the payload, byte-identical to the C++ writer's. */
export function wrapperHeader(payloadSize: number): Uint8Array {
  const out = new Uint8Array(TAR_PAYLOAD_OFFSET);
  const record = paxSizeRecord(payloadSize);

  const pax = out.subarray(0, BLOCK);
  put(pax, NAME, PAX_NAME);
  put(pax, SIZE, `${octal(record.length, 11)} `);
  pax[TYPEFLAG] = 0x78; // 'x'
  put(pax, MAGIC, 'ustar\0');
  put(pax, VERSION, '00');
  seal(pax);

  put(out, BLOCK, record);

  writeRegularFileHeader(out.subarray(2 * BLOCK, 3 * BLOCK), MEMBER_NAME, REGULAR_FILE_MODE, 0);
  return out;
}

function placeholder(): Uint8Array {
  const out = new Uint8Array(TAR_PAYLOAD_OFFSET);
  put(out, NAME, 'overlaybd.new');
  put(out, MAGIC, 'xxtar\0');
  put(out, VERSION, 'xx');
  return out;
}

/** A Sink whose bytes become the payload of a one-member tar written to a seekable inner Sink. */
export class TarWrapSink implements Sink {
  readonly seekable = true;
  private started: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly inner: Sink) {
    if (!inner.seekable) throw new Error('tar wrapping needs a seekable output (the size goes in the header at the end)');
    if (inner.position !== 0) throw new Error('tar wrapping must start at the beginning of its output');
  }

  static async create(inner: Sink): Promise<TarWrapSink> {
    const s = new TarWrapSink(inner);
    await s.start();
    return s;
  }

  /** Payload bytes written so far. */
  get position(): number {
    return Math.max(0, this.inner.position - TAR_PAYLOAD_OFFSET);
  }

  async write(data: Uint8Array): Promise<void> {
    await this.start();
    await this.inner.write(data);
  }

  async pwrite(data: Uint8Array, offset: number): Promise<void> {
    await this.start();
    await this.inner.pwrite(data, offset + TAR_PAYLOAD_OFFSET);
  }

  sync(): Promise<void> {
    return this.inner.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.start();
      const size = this.position;
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      await this.inner.write(new Uint8Array(pad + 2 * BLOCK));
      await this.inner.pwrite(wrapperHeader(size), 0);
    } finally {
      await this.inner.close();
    }
  }

  private start(): Promise<void> {
    this.started ??= this.inner.write(placeholder());
    return this.started;
  }
}
