/**
 * A loopback HTTP proxy that sits between a client and a registry and misbehaves on demand:
 * error statuses, connection resets mid-body, truncated or short bodies, delays, redirects, and
 * Range handling a broken proxy might do. Every request is logged with its headers.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export type Fault =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Pass the headers and half the body, then reset the connection. */
  | { kind: 'reset' }
  /** Promise the full Content-Length, send half, then close the connection. */
  | { kind: 'truncate' }
  /** A well-formed response whose body (and Content-Length) is half of what upstream sent. */
  | { kind: 'short' }
  /** Wait before answering. */
  | { kind: 'delay'; ms: number }
  | { kind: 'redirect'; location: string; status?: number }
  /** Drop the Range header: upstream answers 200 with the whole blob. */
  | { kind: 'ignoreRange' }
  /** Keep Range upstream but answer 200 with just the partial body (a wrong 200). */
  | { kind: 'wrong200' }
  /** Upstream's status and headers with a different body of the same length (corruption in transit). */
  | { kind: 'corrupt'; minBytes?: number };

export interface ProxyLogEntry { method: string; url: string; headers: IncomingMessage['headers']; fault?: Fault['kind'] }

interface Rule { fault: Fault; match: (req: IncomingMessage) => boolean; times: number }

export class FaultProxy {
  readonly log: ProxyLogEntry[] = [];
  private rules: Rule[] = [];
  private readonly server: Server;
  private upstream!: URL;
  private address?: AddressInfo;

  constructor() {
    this.server = createServer((req, res) => { void this.handle(req, res); });
  }

  /** Listens on 127.0.0.1 (`port` 0: any free port) and forwards to `upstream`. */
  async start(upstream: string, port = 0): Promise<string> {
    this.upstream = new URL(upstream);
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.address = this.server.address() as AddressInfo;
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${this.address!.port}`;
  }

  get hostPort(): string {
    return `127.0.0.1:${this.address!.port}`;
  }

  /** Applies `fault` to the next `times` requests that `match` (default: every request). */
  inject(fault: Fault, opts: { match?: (req: IncomingMessage) => boolean; times?: number } = {}): void {
    this.rules.push({ fault, match: opts.match ?? (() => true), times: opts.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private take(req: IncomingMessage): Fault | undefined {
    const rule = this.rules.find((r) => r.times > 0 && r.match(req));
    if (!rule) return undefined;
    rule.times--;
    return rule.fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const fault = this.take(req);
    this.log.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, ...(fault ? { fault: fault.kind } : {}) });
    if (fault?.kind === 'status') {
      req.resume();
      const body = fault.body ?? '';
      res.writeHead(fault.status, { ...fault.headers, 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      res.writeHead(fault.status ?? 307, { location: fault.location, 'content-length': '0' });
      res.end();
      return;
    }
    if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (res.destroyed) return;
    const headers = { ...req.headers, host: this.upstream.host };
    if (fault?.kind === 'ignoreRange') delete headers.range;
    const up = request({ host: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers }, (upRes) => {
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => chunks.push(c));
      upRes.on('end', () => this.answer(res, upRes, Buffer.concat(chunks), fault));
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  private answer(res: ServerResponse, upRes: IncomingMessage, body: Buffer, fault: Fault | undefined): void {
    const headers = { ...upRes.headers };
    const half = body.subarray(0, Math.floor(body.length / 2));
    switch (fault?.kind) {
      case 'reset':
        res.writeHead(upRes.statusCode ?? 502, headers);
        res.write(half, () => res.socket?.resetAndDestroy());
        return;
      case 'truncate':
        res.writeHead(upRes.statusCode ?? 502, headers);
        res.write(half, () => res.socket?.destroy());
        return;
      case 'short':
        res.writeHead(upRes.statusCode ?? 502, { ...headers, 'content-length': String(half.length) });
        res.end(half);
        return;
      case 'wrong200': {
        delete headers['content-range'];
        res.writeHead(200, { ...headers, 'content-length': String(body.length) });
        res.end(body);
        return;
      }
      case 'corrupt': {
        const bad = Buffer.from(body);
        if (bad.length > 0 && bad.length > (fault.minBytes ?? 0)) bad[bad.length >> 1] ^= 0xff;
        res.writeHead(upRes.statusCode ?? 502, headers);
        res.end(bad);
        return;
      }
      default:
        res.writeHead(upRes.statusCode ?? 502, headers);
        res.end(body);
    }
  }
}

/** A proxy in front of `upstream`, stopped after the test. */
export async function startFaultProxy(t: TestContext, upstream: string): Promise<FaultProxy> {
  const proxy = new FaultProxy();
  await proxy.start(upstream);
  t.after(() => proxy.stop());
  return proxy;
}
