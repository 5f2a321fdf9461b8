/**
 * A real HTTP upstream for cache tests and benches: node:http on 127.0.0.1 serving one body with
 * Range support (206 + Content-Range), recording every request, with knobs for faults and a
 * shaped link (delay per request, shared token bucket for bandwidth). It can be stopped (all
 * connections cut, mid-response too) and started again on the same port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TokenBucket } from '../../../src/io/cache/token-bucket.ts';

export interface RangeServerOptions {
  /** Added before each response (simulated round trip). */
  delayMs?: number;
  /** Shared bandwidth limit for all responses, bytes per second. */
  bytesPerSec?: number;
}

export class RangeServer {
  /** Every data request served or attempted: [start, end) byte ranges. */
  readonly requests: Array<{ start: number; end: number }> = [];
  /** Respond 500 to this many upcoming requests. */
  failNext = 0;
  delayMs: number;
  private bucket: TokenBucket | undefined;
  private server: Server | undefined;
  port = 0;

  private constructor(public body: Uint8Array, opts: RangeServerOptions) {
    this.delayMs = opts.delayMs ?? 0;
    this.bucket = opts.bytesPerSec ? new TokenBucket(opts.bytesPerSec, 64 << 10) : undefined;
  }

  static async start(body: Uint8Array, opts: RangeServerOptions = {}): Promise<RangeServer> {
    const s = new RangeServer(body, opts);
    await s.listen();
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/blob`;
  }

  get bytesServed(): number {
    return this.requests.reduce((n, r) => n + (r.end - r.start), 0);
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts every connection, including responses in progress. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const size = this.body.length;
    const m = /^bytes=(\d+)-(\d+)?$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m ? Math.min(size, m[2] === undefined ? size : Number(m[2]) + 1) : size;
    this.requests.push({ start, end });
    if (this.delayMs > 0) await sleep(this.delayMs);
    if (this.failNext > 0) {
      this.failNext--;
      res.writeHead(500, { 'content-type': 'text/plain' }).end('injected failure');
      return;
    }
    if (start >= size || end <= start) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    res.writeHead(m ? 206 : 200, {
      'content-length': String(end - start),
      ...(m ? { 'content-range': `bytes ${start}-${end - 1}/${size}` } : {}),
    });
    const step = 64 << 10;
    for (let pos = start; pos < end; pos += step) {
      const chunk = this.body.subarray(pos, Math.min(end, pos + step));
      await this.bucket?.take(chunk.length);
      if (res.destroyed) return;
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end();
  }
}
