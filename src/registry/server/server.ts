/**
 * The embedded OCI registry: node:http, no framework. Routes the distribution API onto the
 * content-addressed Storage, checks names and digests before they reach the disk, answers every
 * failure with an OCI error body, and never lets one bad request take the server down.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { isRepositoryName } from '../names.ts';
import { ServerAuth, type ServerAuthConfig } from './auth.ts';
import { deleteBlob, getBlob } from './blobs.ts';
import { HttpError, err, sendError, sendJson } from './http.ts';
import { deleteManifest, getManifest, putManifest } from './manifests.ts';
import { Storage } from './storage.ts';
import { Uploads } from './uploads.ts';

export interface RegistryServerOptions {
  root: string;
  /** Host to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  auth?: ServerAuthConfig;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Upload sessions idle this long are dropped (default one hour). */
  uploadIdleMs?: number;
  /** Called for every request once answered, e.g. for logs or test assertions. */
  onRequest?: (entry: RequestLogEntry) => void;
}

export interface RequestLogEntry { method: string; url: string; status: number; authorization?: string }

const ROUTES: { re: RegExp; kind: 'manifest' | 'upload' | 'blob' | 'tags' }[] = [
  { re: /^\/v2\/(.+)\/manifests\/([^/]+)$/, kind: 'manifest' },
  { re: /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/, kind: 'upload' },
  { re: /^\/v2\/(.+)\/blobs\/([^/]+)$/, kind: 'blob' },
  { re: /^\/v2\/(.+)\/tags\/list$/, kind: 'tags' },
];

export class RegistryServer {
  readonly storage: Storage;
  readonly auth?: ServerAuth;
  private readonly uploads: Uploads;
  private readonly http: Server;
  private listening?: AddressInfo;

  constructor(private readonly opts: RegistryServerOptions) {
    this.storage = new Storage(opts.root);
    if (opts.auth) this.auth = new ServerAuth(opts.auth);
    this.uploads = new Uploads(this.storage, opts.uploadIdleMs);
    const handler = (req: IncomingMessage, res: ServerResponse): void => { void this.handle(req, res); };
    this.http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(handler);
    this.http.keepAliveTimeout = 30_000;
  }

  /** Creates the storage folders and listens; resolves with the base URL. */
  async start(): Promise<string> {
    await this.storage.init();
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.listening = this.http.address() as AddressInfo;
    return this.url;
  }

  /** `http://host:port` (or https) */
  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://${this.hostPort}`;
  }

  /** `host:port`, the registry part of an image reference. */
  get hostPort(): string {
    if (!this.listening) throw new Error('registry server not started');
    const host = this.listening.family === 'IPv6' ? `[${this.listening.address}]` : this.listening.address;
    return `${host}:${this.listening.port}`;
  }

  async stop(): Promise<void> {
    this.uploads.stop();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  /** Drops idle upload sessions now (also done on a timer). */
  sweepUploads(now?: number): Promise<number> {
    return this.uploads.sweep(now);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    res.on('finish', () => this.opts.onRequest?.({ method: req.method ?? '', url: req.url ?? '', status: res.statusCode,
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) }));
    try {
      res.setHeader('docker-distribution-api-version', 'registry/2.0');
      await this.route(req, res);
    } catch (e) {
      if (!(e instanceof HttpError)) {
        // Body streams that failed because the client went away need no answer.
        if (res.destroyed || req.destroyed) return;
      }
      const httpErr = e instanceof HttpError ? e : new HttpError(500, 'UNKNOWN', `internal error: ${(e as Error)?.message ?? e}`);
      if (!req.complete) req.resume();
      sendError(res, httpErr);
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Route on the raw path: URL parsing would resolve `..` segments and hide them from the name check.
    const raw = req.url ?? '/';
    const path = raw.split('?')[0]!;
    const url = new URL(raw.startsWith('/') ? raw : `/${raw}`, 'http://registry');
    const method = req.method ?? 'GET';
    if (path === '/token' && this.auth) {
      this.auth.handleToken(req, res, url);
      return;
    }
    if (path === '/v2/' || path === '/v2') {
      this.auth?.check(req, undefined, 'pull');
      if (method !== 'GET' && method !== 'HEAD') throw err.unsupported(`${method} not allowed on /v2/`);
      sendJson(res, 200, {});
      return;
    }
    if (path === '/v2/_catalog') {
      this.auth?.check(req, undefined, 'pull');
      sendJson(res, 200, { repositories: await this.storage.repositories() });
      return;
    }
    for (const { re, kind } of ROUTES) {
      const m = re.exec(path);
      if (!m) continue;
      const name = m[1]!;
      if (!isRepositoryName(name)) throw err.nameInvalid(name);
      const ref = m[2] ?? '';
      const write = !(method === 'GET' || method === 'HEAD');
      this.auth?.check(req, name, write ? 'push' : 'pull');
      await this.dispatch(kind, method, name, ref, url, req, res);
      return;
    }
    throw new HttpError(404, 'NOT_FOUND', `no such endpoint: ${method} ${path}`);
  }

  private async dispatch(kind: 'manifest' | 'upload' | 'blob' | 'tags', method: string, name: string, ref: string,
    url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const s = this.storage;
    const unsupported = (): never => {
      throw err.unsupported(`${method} not allowed on this ${kind} endpoint`);
    };
    switch (kind) {
      case 'manifest':
        if (method === 'GET' || method === 'HEAD') return getManifest(s, name, ref, req, res);
        if (method === 'PUT') return putManifest(s, name, ref, req, res);
        if (method === 'DELETE') return deleteManifest(s, name, ref, res);
        return unsupported();
      case 'blob':
        if (method === 'GET' || method === 'HEAD') return getBlob(s, name, ref, req, res);
        if (method === 'DELETE') return deleteBlob(s, name, ref, res);
        return unsupported();
      case 'upload':
        if (ref === '') {
          if (method === 'POST') return this.uploads.start(name, url, req, res, (from) => this.auth?.allowed(req, from, 'pull') ?? true);
          return unsupported();
        }
        if (method === 'PATCH') return this.uploads.patch(name, ref, req, res);
        if (method === 'PUT') return this.uploads.put(name, ref, url, req, res);
        if (method === 'GET') return this.uploads.status(name, ref, res);
        if (method === 'DELETE') return this.uploads.cancel(name, ref, res);
        return unsupported();
      case 'tags': {
        if (method !== 'GET') return unsupported();
        const tags = await s.tags(name);
        if (tags === undefined) throw err.nameUnknown(name);
        return this.tagsPage(name, tags, url, res);
      }
    }
  }

  /** Tags, sorted, with `n`/`last` pagination and a Link header to the next page. */
  private tagsPage(name: string, tags: string[], url: URL, res: ServerResponse): void {
    const last = url.searchParams.get('last');
    const nParam = url.searchParams.get('n');
    let list = last ? tags.filter((t) => t > last) : tags;
    const headers: Record<string, string> = {};
    if (nParam !== null) {
      const n = Number(nParam);
      if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, 'PAGINATION_NUMBER_INVALID', `invalid n=${nParam}`);
      if (list.length > n) {
        list = list.slice(0, n);
        if (n > 0) headers.link = `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(list[n - 1]!)}>; rel="next"`;
      }
    }
    sendJson(res, 200, { name, tags: list }, headers);
  }
}

/** Opens storage under `root` and listens; the caller stops it. */
export async function startRegistryServer(opts: RegistryServerOptions): Promise<RegistryServer> {
  const server = new RegistryServer(opts);
  await server.start();
  return server;
}
