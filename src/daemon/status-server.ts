/**
 * The daemon's observability endpoint, on `metricsAddress` (TCP or a unix socket), plain HTTP:
 * - `GET /metrics`: Prometheus text of every dadi metric the process has (prom-client's default
 *   registry: block cache, trace/prefetch; the registry client's own registry: requests, blob
 *   bytes, retries) plus the process's own (RSS, CPU, event-loop lag);
 * - `GET /status`: the JSON status of the attached images (snapshotter/status.ts), which
 *   `dadi image info --daemon` prints.
 * Read-only and unauthenticated, like a node exporter: bind it to loopback or a socket.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, register, Registry } from 'prom-client';
import { errorMessage } from '../errors.ts';
import { removeStaleSocket } from '../nbd/server.ts';
import { registryMetrics } from '../registry/metrics.ts';
import { log } from '../util/log.ts';
import { formatHttpAddress, parseHttpAddress, type HttpAddress } from './http-address.ts';

let processMetrics: Registry | undefined;

/** The registries /metrics serves, merged at each scrape (metrics may be registered late). */
function metricsRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: 'dadi_snapshotter_' });
  }
  return Registry.merge([register, registryMetrics, processMetrics]);
}

export interface StatusServer {
  /** Where it listens, as `HOST:PORT` (the real port when 0 was asked) or `unix:PATH`. */
  readonly address: string;
  close(): Promise<void>;
}

async function handle(req: IncomingMessage, res: ServerResponse, status: () => Promise<unknown>): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
    return;
  }
  if (path === '/metrics') {
    const reg = metricsRegistry();
    const body = await reg.metrics();
    res.writeHead(200, { 'content-type': reg.contentType }).end(req.method === 'HEAD' ? undefined : body);
  } else if (path === '/status') {
    const body = `${JSON.stringify(await status())}\n`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(req.method === 'HEAD' ? undefined : body);
  } else if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('dadi snapshotter: /metrics (Prometheus), /status (attached images, JSON)\n');
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${path} here; try /metrics or /status\n`);
  }
}

/** Serves /metrics and /status on `address` until closed. */
export async function startStatusServer(address: string, status: () => Promise<unknown>): Promise<StatusServer> {
  const addr: HttpAddress = parseHttpAddress(address);
  const server: Server = createServer((req, res) => {
    handle(req, res, status).catch((err: unknown) => {
      log.warn({ url: req.url, err: errorMessage(err) }, 'status endpoint request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${errorMessage(err)}\n`);
    });
  });
  server.keepAliveTimeout = 5_000;
  if ('unix' in addr) {
    await mkdir(dirname(addr.unix), { recursive: true, mode: 0o711 });
    await removeStaleSocket(addr.unix);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => { server.off('error', reject); resolve(); };
    if ('unix' in addr) server.listen(addr.unix, done);
    else server.listen(addr.port, addr.host, done);
  });
  const bound = 'unix' in addr ? addr : { host: addr.host, port: (server.address() as AddressInfo).port };
  const shown = formatHttpAddress(bound);
  log.info({ address: shown }, 'serving /metrics and /status');
  return {
    address: shown,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if ('unix' in addr) await rm(addr.unix, { force: true });
    },
  };
}
