/**
 * A byte-level NBD client for protocol tests: it sends exactly what a test asks for (including
 * malformed messages) and reads replies field by field, so every server answer can be checked.
 */
import { createConnection, type Socket } from 'node:net';
import { once } from 'node:events';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;

export interface OptionReply { option: number; type: number; data: Buffer }
export interface Chunk { flags: number; type: number; handle: bigint; data: Buffer }
export interface SimpleReply { error: number; handle: bigint; data: Buffer }

export class RawClient {
  private buf = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | null = null;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.(); });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => { this.ended = true; this.wake?.(); resolve(); }));
  }

  static async connect(path: string): Promise<RawClient> {
    const s = createConnection(path);
    await once(s, 'connect');
    return new RawClient(s);
  }

  /** Exactly n bytes; rejects if the server closes first. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.wake = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Resolves true when the server closes the connection within the time. */
  async closesWithin(ms: number): Promise<boolean> {
    if (this.ended) return true;
    const t = new Promise<false>((r) => setTimeout(() => r(false), ms).unref());
    return Promise.race([this.closed.then(() => true as const), t]);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Reads the greeting and returns the handshake flags. */
  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    return g.readUInt16BE(16);
  }

  sendClientFlags(flags: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags >>> 0);
    this.write(b);
  }

  sendOption(option: number, data: Uint8Array = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  /** Sends an option and collects replies up to and including the final one (ACK or error). */
  async option(option: number, data?: Uint8Array): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === 1 || (r.type & 0x80000000) !== 0) return out;
    }
  }

  /** Greeting, fixed newstyle + no zeroes, optional structured replies and meta context, then GO. */
  async start(opts: { name?: string; structured?: boolean; meta?: boolean; blockSize?: boolean } = {}): Promise<OptionReply[]> {
    await this.greeting();
    this.sendClientFlags(3);
    if (opts.structured) await this.option(8);
    if (opts.meta) await this.option(10, metaData(opts.name ?? '', ['base:allocation']));
    const replies = await this.option(7, infoData(opts.name ?? '', opts.blockSize === false ? [] : [3]));
    if (replies[replies.length - 1]!.type !== 1) throw new Error(`GO failed: 0x${replies[replies.length - 1]!.type.toString(16)}`);
    return replies;
  }

  request(type: number, handle: bigint, offset: number, length: number, flags = 0, payload?: Uint8Array): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  async simpleReply(dataLength = 0): Promise<SimpleReply> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`not a simple reply: magic 0x${h.readUInt32BE(0).toString(16)}`);
    const error = h.readUInt32BE(4);
    return { error, handle: h.readBigUInt64BE(8), data: error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0) };
  }

  async chunk(): Promise<Chunk> {
    const h = await this.read(20);
    if (h.readUInt32BE(0) !== 0x668e33ef) throw new Error(`not a structured chunk: magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: h.readBigUInt64BE(8), data: await this.read(h.readUInt32BE(16)) };
  }

  /** All chunks of one structured reply (until DONE). */
  async structuredReply(): Promise<Chunk[]> {
    const out: Chunk[] = [];
    for (;;) {
      const c = await this.chunk();
      out.push(c);
      if (c.flags & 1) return out;
    }
  }
}

export function infoData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(6 + n.length + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

export function metaData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.from(name);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(n.length);
  parts.push(head, n);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length);
  parts.push(count);
  for (const q of queries) {
    const qb = Buffer.from(q);
    const l = Buffer.alloc(4);
    l.writeUInt32BE(qb.length);
    parts.push(l, qb);
  }
  return Buffer.concat(parts);
}

/** Reassembles a structured READ reply into bytes; holes become zeros. Throws on error chunks. */
export function assembleRead(chunks: Chunk[], offset: number, length: number): Buffer {
  const out = Buffer.alloc(length, 0xee);
  let covered = 0;
  for (const c of chunks) {
    if (c.type === 1) {
      const at = Number(c.data.readBigUInt64BE(0)) - offset;
      c.data.copy(out, at, 8);
      covered += c.data.length - 8;
    } else if (c.type === 2) {
      const at = Number(c.data.readBigUInt64BE(0)) - offset;
      const n = c.data.readUInt32BE(8);
      out.fill(0, at, at + n);
      covered += n;
    } else if (c.type & 0x8000) {
      throw new Error(`error chunk errno ${c.data.readUInt32BE(0)}: ${c.data.toString('utf8', 6, 6 + c.data.readUInt16BE(4))}`);
    }
  }
  if (covered !== length) throw new Error(`chunks cover ${covered} of ${length} bytes`);
  return out;
}
