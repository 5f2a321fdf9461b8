/**
 * The HTTP side of an agent or the root: answers `GET /blobs/<digest>` Range requests (see
 * protocol.ts) from a BlobServer. It refuses requests without the shared token (401) and
 * requests whose path already contains this node (508: the member lists disagree and the request
 * went round a loop). A failure before the first byte is an error status; a failure after it
 * resets the connection, which the peer sees as a truncated body, never as wrong data.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../errors.ts';
import { log } from '../util/log.ts';
import type { BlobServer } from './blob-server.ts';
import { requestPath } from './peer-source.ts';
import { parseBlobUrlPath, parsePath, parseRange, parseRepository, PATH_HEADER, REPOSITORY_HEADER, SIZE_HEADER, tokenMatches } from './protocol.ts';

/** Bytes read from the cache per step of a response body. */
const CHUNK = 1 << 20;

export interface PeerServerOptions {
  /** This node's member name (`host:port`), as it appears in paths. */
  self: string;
  /** Shared token; empty: no authentication (tests, trusted networks only). */
  token: string;
  blobs: BlobServer;
}

export interface PeerServerStats { requests: number; bytes: number; unauthorized: number; loops: number; errors: number }

export class PeerServer {
  readonly stats: PeerServerStats = { requests: 0, bytes: 0, unauthorized: 0, loops: 0, errors: 0 };
  private readonly server: Server;

  constructor(private readonly opts: PeerServerOptions) {
    this.server = createServer((req, res) => { void this.handle(req, res); });
    this.server.keepAliveTimeout = 30_000;
  }

  /** Listens on `host:port` (port 0: any); resolves with the bound address. */
  listen(address: string): Promise<AddressInfo> {
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(i + 1));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const send = (status: number, message: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(`${message}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'only GET and HEAD', { allow: 'GET, HEAD' });
    if (this.opts.token && !tokenMatches(req.headers.authorization, this.opts.token)) {
      this.stats.unauthorized++;
      return send(401, 'a peer token is required', { 'www-authenticate': 'Bearer realm="dadi-p2p"' });
    }
    const digest = parseBlobUrlPath(req.url ?? '');
    if (!digest) return send(404, 'not a /blobs/sha256:<hex> path');
    const path = parsePath(req.headers[PATH_HEADER]);
    if (path.includes(this.opts.self)) {
      this.stats.loops++;
      return send(508, `loop: ${this.opts.self} is already in the path ${path.join(',')}`);
    }
    const repo = parseRepository(req.headers[REPOSITORY_HEADER]);
    if (!repo) return send(400, `${REPOSITORY_HEADER}: expected registry/repository`);
    const size = Number(req.headers[SIZE_HEADER]);
    if (!Number.isSafeInteger(size) || size < 0) return send(400, `${SIZE_HEADER}: expected the blob size in bytes`);
    const range = parseRange(req.headers.range, size);
    if (range === 'bad') return send(416, `cannot serve range ${req.headers.range} of a ${size}-byte blob`, { 'content-range': `bytes */${size}` });
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const blob = { ...repo, digest, size };
    try {
      await requestPath.run([...path, this.opts.self], () => this.opts.blobs.with(blob, async (h) => {
        let at = start;
        const first = new Uint8Array(Math.min(CHUNK, end + 1 - at));
        if (req.method === 'GET' && first.length > 0) await readExactly(h, first, at);
        res.writeHead(range ? 206 : 200, {
          'content-type': 'application/octet-stream', 'content-length': String(end + 1 - start), 'accept-ranges': 'bytes',
          ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
        });
        if (req.method === 'HEAD') return void res.end();
        await write(res, first);
        at += first.length;
        this.stats.bytes += first.length;
        while (at <= end) {
          const buf = new Uint8Array(Math.min(CHUNK, end + 1 - at));
          await readExactly(h, buf, at);
          await write(res, buf);
          at += buf.length;
          this.stats.bytes += buf.length;
        }
        res.end();
      }));
    } catch (err) {
      this.stats.errors++;
      log.warn({ digest, range: req.headers.range, err: errorMessage(err) }, 'p2p: serving a range failed');
      if (!res.headersSent) send(502, `cannot read ${digest}: ${errorMessage(err)}`);
      else res.destroy();
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function readExactly(src: { read(dst: Uint8Array, offset: number): Promise<number> }, dst: Uint8Array, offset: number): Promise<void> {
  const n = await src.read(dst, offset);
  if (n !== dst.length) throw new Error(`short read at ${offset}: ${n} of ${dst.length} bytes`);
}

function write(res: ServerResponse, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.write(chunk)) return resolve();
    const onDrain = (): void => { res.off('close', onClose); resolve(); };
    const onClose = (): void => { res.off('drain', onDrain); reject(new Error('the peer closed the connection')); };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}
