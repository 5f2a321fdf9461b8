/**
 * `dadi snapshotter`: the long-running service. Opens the block cache and one registry client
 * (plain-HTTP hosts and mirrors from the config), the snapshotter (which recovers from whatever
 * an earlier process left), and serves the snapshots API on a unix socket until SIGTERM/SIGINT,
 * then stops accepting calls, detaches every device and closes the store.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BlobCache } from '../io/cache.ts';
import { removeStaleSocket } from '../nbd/server.ts';
import { RegistryClient } from '../registry/client.ts';
import { log } from '../util/log.ts';
import type { BlobRoute, BlobRoutes } from '../image/chain/upstreams.ts';
import { mirrorRoutes } from '../image/remote/mirrors.ts';
import { UpstreamHealth } from '../io/upstream-health.ts';
import { P2PAgent } from '../p2p/agent.ts';
import type { SnapshotterConfig } from './config.ts';
import { addSnapshotsService } from './snapshotter/service.ts';
import { Snapshotter } from './snapshotter/snapshotter.ts';
import { snapshotterStatus } from './snapshotter/status.ts';
import { startStatusServer, type StatusServer } from './status-server.ts';

export interface RunningSnapshotter {
  snapshotter: Snapshotter;
  address: string;
  /** Where /metrics and /status are served (`HOST:PORT` with the real port, or `unix:PATH`), when configured. */
  metricsAddress: string | undefined;
  stop(): Promise<void>;
}

/** Plain-HTTP registries. Mirrors are not endpoints: they are blob routes with the registry as fallback. */
export function registryEndpoints(cfg: SnapshotterConfig): Record<string, string> {
  const endpoints: Record<string, string> = {};
  for (const host of cfg.registry.plainHttp) endpoints[host] = `http://${host === 'docker.io' ? 'registry-1.docker.io' : host}`;
  return endpoints;
}

/** The mirrors (and, with a P2P agent, its parent route first) tried before the registry. */
function blobRoutes(cfg: SnapshotterConfig, before: readonly BlobRoute[]): { routes: BlobRoutes | undefined; close: () => Promise<void> } {
  const mirrors = mirrorRoutes(cfg.registry.mirrors, { timeoutMs: cfg.registry.upstreamTimeoutMs });
  const all = [...before, ...mirrors];
  const close = async (): Promise<void> => { await Promise.all(mirrors.map((m) => m.close())); };
  if (all.length === 0) return { routes: undefined, close };
  return {
    routes: {
      routes: all, health: new UpstreamHealth(), timeoutMs: cfg.registry.upstreamTimeoutMs,
      onFallback: (e) => log.warn(e, 'upstream failed, reading from the next one'),
    },
    close,
  };
}

export async function startSnapshotter(cfg: SnapshotterConfig): Promise<RunningSnapshotter> {
  const started = performance.now();
  const client = new RegistryClient({ endpoints: registryEndpoints(cfg) });
  const cache = await BlobCache.open({ dir: cfg.cache.dir, capacityBytes: cfg.cache.size, refillUnit: cfg.cache.refillUnit });
  const agent = cfg.p2p ? await P2PAgent.start(cfg.p2p, { cache, client }) : undefined;
  const routes = blobRoutes(cfg, agent ? [agent.route] : []);
  const snapshotter = await Snapshotter.open(cfg, {
    client, cache, ...(routes.routes ? { routes: routes.routes } : {}),
    background: { enable: cfg.background.enable, delayMs: cfg.background.delaySeconds * 1000, bytesPerSecond: cfg.background.bytesPerSecond },
    ...(cfg.readAheadKB >= 0 ? { readAheadKB: cfg.readAheadKB } : {}),
  });
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 << 20 });
  addSnapshotsService(server, snapshotter);
  await mkdir(dirname(cfg.address), { recursive: true, mode: 0o711 });
  await removeStaleSocket(cfg.address);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${cfg.address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  let status: StatusServer | undefined;
  if (cfg.metricsAddress) {
    try {
      status = await startStatusServer(cfg.metricsAddress, () => snapshotterStatus(snapshotter));
    } catch (err) {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await snapshotter.close();
      throw new Error(`metricsAddress ${cfg.metricsAddress}: ${(err as Error).message}`, { cause: err });
    }
  }
  log.info({ address: cfg.address, root: cfg.root, cacheDir: cfg.cache.dir, rwMode: cfg.rwMode, ms: Math.round(performance.now() - started) },
    'dadi snapshotter serving');
  let stopping: Promise<void> | undefined;
  return {
    snapshotter, address: cfg.address, metricsAddress: status?.address,
    stop: () => {
      stopping ??= (async () => {
        await status?.close();
        await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        await snapshotter.close();
        await agent?.close();
        await cache.close();
        await routes.close();
        await client.close();
        await rm(cfg.address, { force: true });
        log.info('dadi snapshotter stopped');
      })();
      return stopping;
    },
  };
}
