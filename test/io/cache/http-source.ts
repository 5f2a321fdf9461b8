/**
 * Test upstreams: a ByteSource reading a RangeServer over real HTTP (undici), and a wrapper
 * that counts what the cache asks of its upstream and injects faults.
 */
import { Agent, request } from 'undici';
import { PLAIN_SOURCE, type ByteSource } from '../../../src/io/types.ts';

export class HttpTestSource implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  private readonly agent = new Agent({ connections: 16, keepAliveTimeout: 1000 });
  constructor(readonly url: string, readonly size: number) {}

  get name(): string {
    return this.url;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    const len = Math.min(dst.length, this.size - offset);
    if (len <= 0) return 0;
    const res = await request(this.url, {
      dispatcher: this.agent,
      headers: { range: `bytes=${offset}-${offset + len - 1}` },
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    if (res.statusCode !== 206) {
      await res.body.dump();
      throw new Error(`${this.url}: HTTP ${res.statusCode} for bytes ${offset}-${offset + len - 1}`);
    }
    let n = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (n + chunk.length > len) throw new Error(`${this.url}: response longer than requested`);
      dst.set(chunk, n);
      n += chunk.length;
    }
    return n;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Counts upstream reads and bytes; can fail, shorten or hold reads on purpose. */
export class CountingSource implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  requests = 0;
  bytes = 0;
  readonly ranges: Array<{ offset: number; length: number }> = [];
  /** Reject this many upcoming reads. */
  failNext = 0;
  /** Return this many bytes fewer on the next read. */
  shortNext = 0;
  /** When set, reads wait for it before going upstream (only the read at `gateOffset` when that is set). */
  gate: Promise<void> | undefined;
  gateOffset: number | undefined;
  closed = false;

  constructor(readonly inner: ByteSource) {}

  get size(): number {
    return this.inner.size;
  }

  get name(): string | undefined {
    return this.inner.name;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    this.requests++;
    this.ranges.push({ offset, length: dst.length });
    if (this.gate && (this.gateOffset === undefined || this.gateOffset === offset)) await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected upstream failure');
    }
    const n = await this.inner.read(dst, offset);
    this.bytes += n;
    if (this.shortNext > 0) {
      const cut = Math.min(n, this.shortNext);
      this.shortNext = 0;
      return n - cut;
    }
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inner.close();
  }
}
