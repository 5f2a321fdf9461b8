/**
 * Test tars: tar-stream's packer for ordinary entries, and a small raw writer for what it cannot
 * emit (binary PAX values, GNU ././@LongLink records, odd typeflags).
 */
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';

export type PackEntry = Parameters<tar.Pack['entry']>[0] & { data?: string | Buffer };

/** A whole tar built by tar-stream's packer. */
export async function packTar(entries: PackEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mtime: new Date(1_700_000_000_000), ...header }, data ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function streamOf(buf: Buffer): Readable {
  // Several chunks, so parsers meet records split across reads.
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 7000) parts.push(buf.subarray(i, i + 7000));
  return Readable.from(parts.length > 0 ? parts : [Buffer.alloc(0)]);
}

export interface RawHeader {
  name: string;
  /** Typeflag character: '0' file, '1' hard link, '2' symlink, '5' dir, 'x' PAX, 'L'/'K' GNU long name/link. */
  flag: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  linkname?: string;
  /** 'ustar' (POSIX) or 'gnu' (old GNU magic). */
  magic?: 'ustar' | 'gnu';
}

function octal(buf: Buffer, value: number, off: number, len: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

export function rawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, 'utf8');
  octal(b, h.mode ?? 0o644, 100, 8);
  octal(b, h.uid ?? 0, 108, 8);
  octal(b, h.gid ?? 0, 116, 8);
  octal(b, h.size ?? 0, 124, 12);
  octal(b, h.mtime ?? 1_700_000_000, 136, 12);
  b.write(h.flag, 156, 1, 'latin1');
  if (h.linkname) b.write(h.linkname, 157, 100, 'utf8');
  if ((h.magic ?? 'ustar') === 'ustar') b.write('ustar\u000000', 257, 8, 'latin1');
  else b.write('ustar  \u0000', 257, 8, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

function padded(data: Buffer): Buffer {
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([data, Buffer.alloc(pad)]);
}

/** One PAX record: "LEN key=value\n" where LEN counts itself. */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Builds a tar record by record. */
export class RawTar {
  private readonly parts: Buffer[] = [];

  entry(h: RawHeader, data: Buffer | string = ''): this {
    const buf = Buffer.from(data);
    this.parts.push(rawHeader({ ...h, size: h.size ?? buf.length }), padded(buf));
    return this;
  }

  pax(records: Array<[string, Buffer | string]>): this {
    const body = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
    return this.entry({ name: 'PaxHeaders/x', flag: 'x' }, body);
  }

  gnuLongName(name: string): this {
    return this.entry({ name: '././@LongLink', flag: 'L', magic: 'gnu' }, Buffer.concat([Buffer.from(name), Buffer.alloc(1)]));
  }

  gnuLongLink(target: string): this {
    return this.entry({ name: '././@LongLink', flag: 'K', magic: 'gnu' }, Buffer.concat([Buffer.from(target), Buffer.alloc(1)]));
  }

  /** The archive with its two zero end blocks. */
  end(): Buffer {
    return Buffer.concat([...this.parts, Buffer.alloc(1024)]);
  }
}
