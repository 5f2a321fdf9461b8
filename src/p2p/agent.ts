/**
 * The P2P agent of one host (run by `dadi snapshotter` and `dadi serve` when configured). Its
 * route puts the host's tree parent in front of the mirrors and the registry for every blob it
 * reads: the parent, then the grandparent and so on up to the root, each skipped while it is down
 * (UpstreamHealth), so a dead parent's children re-attach one level up. Its server answers its
 * children from the host's block cache, fetching what the cache misses the same way the host
 * does (tree, then the registry directly), so a range is fetched once per host however many
 * children and local readers want it.
 */
import type { BlobRef } from '../image/chain/layer.ts';
import type { BlobRoute } from '../image/chain/upstreams.ts';
import type { BlobCache } from '../io/cache.ts';
import { OrderedUpstreams, type OrderedUpstream } from '../io/ordered-upstreams.ts';
import { UpstreamHealth } from '../io/upstream-health.ts';
import { HttpRangeSource } from '../registry/blob-source.ts';
import type { RegistryClient, RepositoryRef } from '../registry/client.ts';
import { log } from '../util/log.ts';
import { BlobServer } from './blob-server.ts';
import type { P2PConfig } from './config.ts';
import { PeerServer } from './peer-server.ts';
import { PeerPools, PeerSource, type PeerBlob } from './peer-source.ts';
import { BlobTree, ROOT } from './topology.ts';

export interface AgentDeps {
  cache: BlobCache;
  /** The host's registry client: the last resort for ranges its children ask for. */
  client: RegistryClient;
}

export class P2PAgent {
  readonly health = new UpstreamHealth({ coolDownMs: 10_000 });
  readonly pools: PeerPools;
  readonly route: BlobRoute;
  private readonly trees = new Map<string, BlobTree>();
  private server?: PeerServer;
  private blobs?: BlobServer;

  private constructor(readonly config: P2PConfig, private readonly deps: AgentDeps) {
    this.pools = new PeerPools({ timeoutMs: Math.max(config.timeoutMs * 4, 10_000) });
    this.health.onDown = (e) => log.warn(e, 'p2p: peer down, using the next ancestor');
    this.route = {
      name: 'p2p',
      // No timeout of its own: each peer in the tree has one, and the root's answer is worth waiting for.
      open: (repo: RepositoryRef, blob: BlobRef): OrderedUpstream => ({ name: 'p2p', source: this.treeSource({ ...repo, ...blob }), timeoutMs: 0 }),
    };
  }

  static async start(config: P2PConfig, deps: AgentDeps): Promise<P2PAgent> {
    const agent = new P2PAgent(config, deps);
    agent.blobs = new BlobServer(deps.cache, (b) => new OrderedUpstreams([
      { name: 'p2p', source: agent.treeSource(b), timeoutMs: 0 },
      { name: `origin ${b.registry}`, source: HttpRangeSource.fromDescriptor(deps.client, b, b) },
    ], { health: agent.health }));
    agent.server = new PeerServer({ self: config.self, token: config.token, blobs: agent.blobs });
    const addr = await agent.server.listen(config.listen);
    log.info({ self: config.self, listen: `${addr.address}:${addr.port}`, root: config.root, members: config.members.length, fanout: config.fanout },
      'p2p agent serving');
    return agent;
  }

  /** The tree of a blob (cached: the member list is static). */
  tree(digest: string): BlobTree {
    let t = this.trees.get(digest);
    if (!t) {
      t = new BlobTree(digest, this.config.members, this.config.fanout);
      this.trees.set(digest, t);
    }
    return t;
  }

  /** The blob from the host's ancestors in its tree, nearest first, the root last. */
  treeSource(blob: PeerBlob): OrderedUpstreams {
    const chain = this.tree(blob.digest).ancestors(this.config.self).map((a) => (a === ROOT ? this.config.root : a));
    return new OrderedUpstreams(chain.map((address) => ({
      name: `peer ${address}`,
      source: new PeerSource(this.pools.get(address), blob, this.config.self, this.config.token),
    })), { health: this.health, timeoutMs: this.config.timeoutMs });
  }

  get stats(): PeerServer['stats'] | undefined { return this.server?.stats; }

  async close(): Promise<void> {
    await this.server?.close();
    await this.blobs?.close();
    await this.pools.close();
  }
}
