/**
 * Registry mirrors as blob routes: a registry pull-through cache (`docker-registry` with
 * `proxy.remoteurl`, Harbor's proxy cache) or an HTTP proxy that speaks the registry API
 * (Dragonfly's dfdaemon), configured per registry host and tried before the origin. A mirror
 * gets one attempt per read (no retries: the next upstream is the retry) and a short timeout,
 * and is sent the credentials the origin would get, as containerd does for its mirrors. Only
 * blobs go through mirrors; manifests come from the origin, so a mirror cannot change what the
 * image is, only make its bytes slow (wrong bytes are caught by the layer's checks).
 */
import type { OrderedUpstream } from '../../io/ordered-upstreams.ts';
import { HttpRangeSource } from '../../registry/blob-source.ts';
import { RegistryClient, type RegistryClientOptions, type RepositoryRef } from '../../registry/client.ts';
import type { BlobRoute } from '../chain/upstreams.ts';
import type { BlobRef } from '../chain/layer.ts';

export interface MirrorSpec {
  /** The registry as images name it: `docker.io`, `registry.example.com:5000`. */
  host: string;
  /** Base URL of the mirror (`http://10.0.0.5:5000`). */
  endpoint: string;
}

/** Parses `HOST=URL` (the --mirror flag). */
export function parseMirror(text: string): MirrorSpec {
  const m = /^([^=\s]+)=(https?:\/\/[^/\s]+)\/?$/.exec(text);
  if (!m) throw new Error(`--mirror ${JSON.stringify(text)}: expected REGISTRY=http(s)://host[:port], e.g. docker.io=http://10.0.0.5:5000`);
  return { host: m[1]!, endpoint: m[2]! };
}

export class MirrorRoute implements BlobRoute {
  readonly name: string;
  private readonly client: RegistryClient;

  constructor(readonly mirror: MirrorSpec, opts: Omit<RegistryClientOptions, 'endpoints'> = {}) {
    this.name = `mirror ${mirror.endpoint}`;
    this.client = new RegistryClient({ ...opts, retries: 0, endpoints: { [mirror.host]: mirror.endpoint } });
  }

  open(repo: RepositoryRef, blob: BlobRef): OrderedUpstream | undefined {
    if (repo.registry !== this.mirror.host) return undefined;
    return { name: this.name, source: HttpRangeSource.fromDescriptor(this.client, repo, blob) };
  }

  /** Registry bytes this mirror served (for stats and tests). */
  get bytes(): number { return this.client.stats.bytes; }

  close(): Promise<void> { return this.client.close(); }
}

/** One route per mirror, in the order given (several mirrors of one registry are tried in turn). */
export function mirrorRoutes(mirrors: readonly MirrorSpec[], opts: Omit<RegistryClientOptions, 'endpoints'> = {}): MirrorRoute[] {
  return mirrors.map((m) => new MirrorRoute(m, opts));
}
