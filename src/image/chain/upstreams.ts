/** The upstreams a layer chain can start from. */
import { FileSource } from '../../io/file.ts';
import { OrderedUpstreams, type OrderedUpstream } from '../../io/ordered-upstreams.ts';
import type { UpstreamHealth } from '../../io/upstream-health.ts';
import { HttpRangeSource } from '../../registry/blob-source.ts';
import type { RegistryClient, RepositoryRef } from '../../registry/client.ts';
import type { BlobRef, Upstream } from './layer.ts';

/** A local file (a layer file, an OCI layout blob). */
export function fileUpstream(path: string): Upstream {
  return { name: path, open: () => FileSource.open(path) };
}

/**
 * Another place a registry blob can be read from, tried before the origin registry: a P2P
 * parent, a registry mirror, an HTTP proxy. `open` answers undefined for blobs the route does
 * not serve (a mirror of another registry).
 */
export interface BlobRoute {
  readonly name: string;
  open(repo: RepositoryRef, blob: BlobRef): OrderedUpstream | undefined;
}

/** The routes tried before the origin, in order, with what they share. */
export interface BlobRoutes {
  routes: readonly BlobRoute[];
  /** Per-upstream timeout (default 5 s) before the next one is tried. */
  timeoutMs?: number;
  /** Shared health, so an upstream found down is skipped by every blob. */
  health?: UpstreamHealth;
  onFallback?: (e: { from: string; to: string | undefined; offset: number; reason: string }) => void;
}

/**
 * A registry blob read by HTTP Range through a (shared) client; with `routes`, read from the
 * first of them that answers in time and from the origin registry last (OrderedUpstreams).
 */
export function registryUpstream(client: RegistryClient, repo: RepositoryRef, blob: BlobRef, routes?: BlobRoutes): Upstream {
  const source = HttpRangeSource.fromDescriptor(client, repo, blob);
  const before = routes?.routes.map((r) => r.open(repo, blob)).filter((u): u is OrderedUpstream => u !== undefined) ?? [];
  if (before.length === 0) return { name: source.name, open: () => source };
  return {
    name: source.name,
    open: () => new OrderedUpstreams([...before, { name: `origin ${repo.registry}`, source }], {
      ...(routes!.timeoutMs !== undefined ? { timeoutMs: routes!.timeoutMs } : {}),
      ...(routes!.health ? { health: routes!.health } : {}),
      ...(routes!.onFallback ? { onFallback: routes!.onFallback } : {}),
    }),
  };
}
