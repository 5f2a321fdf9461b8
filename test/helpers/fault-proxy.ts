/**
 * A loopback HTTP proxy that sits between a client and a registry and misbehaves on demand:
 * error statuses, connection resets mid-body, truncated or short bodies, delays, redirects,
 * Range handling a broken proxy might do, and the lies of a hostile upstream (`corrupt`, one
 * `mode` per lie: flipped bits or bytes, bodies cut short, a disagreeing Content-Range, another
 * blob's or another range's bytes). Every request is logged with its headers, and a corrupted
 * response with the blob byte spans whose served bytes differ from the true ones.
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
  /**
   * A lying upstream: a response with a body of more than `minBytes` bytes is served as `mode`
   * says (default flipByte). Smaller ones pass untouched (so a test can spare single-chunk refetches).
   */
  | { kind: 'corrupt'; mode?: CorruptMode; minBytes?: number; other?: string; shift?: number; at?: number };

/**
 * How a `corrupt` fault lies. Content lies keep upstream's status and headers (a well-formed
 * answer that only a digest can catch); transport lies break the HTTP answer itself.
 * - flipByte: the middle byte (or the body's byte `at`) inverted.
 * - flipBit: one bit of the middle byte (or of byte `at`) inverted.
 * - otherBlob: the body is another blob's bytes for the same range (`other`: its digest, in the
 *   same repository; where it is shorter the true bytes remain).
 * - otherRange: the body is the same blob's bytes `shift` bytes away (default 1 MiB; before the
 *   range when it fits, else after). Ranged answers only; a 200 gets flipByte.
 * - cut: the headers promise the whole range, half the body is sent, the connection is closed.
 * - shortBody: a complete answer whose Content-Length (and body) is half the range while its
 *   Content-Range still names all of it.
 * - badRange: a 206 whose Content-Range disagrees with the request: the bytes `shift` away,
 *   labelled with their own Content-Range.
 */
export type CorruptMode = 'flipByte' | 'flipBit' | 'otherBlob' | 'otherRange' | 'cut' | 'shortBody' | 'badRange';

export const CONTENT_LIES: readonly CorruptMode[] = ['flipByte', 'flipBit', 'otherBlob', 'otherRange'];
export const TRANSPORT_LIES: readonly CorruptMode[] = ['cut', 'shortBody', 'badRange'];

/** Blob bytes [start, end) whose served value differed from upstream's. */
export interface Span { start: number; end: number }

export interface ProxyLogEntry {
  method: string; url: string; headers: IncomingMessage['headers']; fault?: Fault['kind'];
  /** For a corrupt fault: the mode applied (none when the response was too small to touch). */
  mode?: CorruptMode;
  /** For a content lie: where the served bytes differ from the true ones (absolute blob offsets). */
  altered?: Span[];
}

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
    const entry: ProxyLogEntry = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, ...(fault ? { fault: fault.kind } : {}) };
    this.log.push(entry);
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
      upRes.on('end', () => {
        const body = Buffer.concat(chunks);
        if (fault?.kind === 'corrupt') void this.lie(req, res, upRes, body, fault, entry).catch(() => res.destroy());
        else this.answer(res, upRes, body, fault);
      });
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
      default:
        res.writeHead(upRes.statusCode ?? 502, headers);
        res.end(body);
    }
  }

  /** Answers with `fault`'s lie about upstream's answer (`body`); see CorruptMode. */
  private async lie(req: IncomingMessage, res: ServerResponse, upRes: IncomingMessage, body: Buffer,
    fault: Extract<Fault, { kind: 'corrupt' }>, entry: ProxyLogEntry): Promise<void> {
    const status = upRes.statusCode ?? 502;
    const headers = { ...upRes.headers };
    const range = rangeOf(req);
    const base = status === 206 && range ? range.first : 0;
    let mode = fault.mode ?? 'flipByte';
    if (!(body.length > 0 && body.length > (fault.minBytes ?? 0)) || (status !== 200 && status !== 206)) {
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    if ((mode === 'otherRange' || mode === 'badRange') && !(status === 206 && range)) mode = 'flipByte';
    entry.mode = mode;
    const shifted = (): { first: number; last: number } => {
      const shift = fault.shift ?? 1 << 20;
      const first = range!.first >= shift ? range!.first - shift : range!.first + shift;
      return { first, last: first + (range!.last - range!.first) };
    };
    let served: Buffer;
    switch (mode) {
      case 'cut':
        res.writeHead(status, headers);
        res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
        return;
      case 'shortBody':
        res.writeHead(status, { ...headers, 'content-length': String(body.length >> 1) });
        res.end(body.subarray(0, body.length >> 1));
        return;
      case 'badRange': {
        const s = shifted();
        const alt = await this.fetch(req.url ?? '/', { ...req.headers, range: `bytes=${s.first}-${s.last}` });
        res.writeHead(alt.status, alt.headers);
        res.end(alt.body);
        return;
      }
      case 'flipByte':
      case 'flipBit':
        served = Buffer.from(body);
        served[Math.min(served.length - 1, fault.at ?? served.length >> 1)] ^= mode === 'flipBit' ? 0x10 : 0xff;
        break;
      case 'otherBlob':
      case 'otherRange': {
        const url = mode === 'otherBlob' ? (req.url ?? '/').replace(/\/blobs\/[^/?]+/, `/blobs/${fault.other}`) : req.url ?? '/';
        const s = mode === 'otherRange' ? shifted() : range;
        const alt = await this.fetch(url, { ...req.headers, ...(s ? { range: `bytes=${s.first}-${s.last}` } : {}) });
        served = Buffer.from(body);
        if (alt.status === 200 || alt.status === 206) served.set(alt.body.subarray(0, served.length));
        break;
      }
    }
    entry.altered = diffSpans(body, served, base);
    res.writeHead(status, headers);
    res.end(served);
  }

  /** A whole upstream answer, for the lies that serve other bytes. */
  private fetch(path: string, reqHeaders: IncomingMessage['headers']): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const up = request({ host: this.upstream.hostname, port: this.upstream.port, method: 'GET', path,
        headers: { ...reqHeaders, host: this.upstream.host } }, (upRes) => {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => resolve({ status: upRes.statusCode ?? 502, headers: upRes.headers, body: Buffer.concat(chunks) }));
        upRes.on('error', reject);
      });
      up.on('error', reject);
      up.end();
    });
  }
}

/** The range a request asks for (`bytes=first-last`); undefined without one or in another form. */
function rangeOf(req: IncomingMessage): { first: number; last: number } | undefined {
  const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
  return m ? { first: Number(m[1]), last: Number(m[2]) } : undefined;
}

/** The spans (offset by `base`) where `a` and `b` differ, over their common length. */
function diffSpans(a: Uint8Array, b: Uint8Array, base: number): Span[] {
  const out: Span[] = [];
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) continue;
    let j = i + 1;
    while (j < n && a[j] !== b[j]) j++;
    out.push({ start: base + i, end: base + j });
    i = j;
  }
  return out;
}

/** A proxy in front of `upstream`, stopped after the test. */
export async function startFaultProxy(t: TestContext, upstream: string): Promise<FaultProxy> {
  const proxy = new FaultProxy();
  await proxy.start(upstream);
  t.after(() => proxy.stop());
  return proxy;
}
