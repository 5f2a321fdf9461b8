/**
 * A host that attaches images with P2P (`dadi serve --p2p-config`, the multi-host test): the
 * block cache and registry client the image and the agent share, and the agent. The image is
 * then opened with these as its cache and client and the agent's route before its mirrors.
 */
import { BlobCache, resolveCacheDir } from '../io/cache.ts';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.ts';
import { P2PAgent } from './agent.ts';
import type { P2PConfig } from './config.ts';

export interface P2PHostOptions {
  cacheDir?: string;
  cacheCapacity?: number;
  refillUnit?: number;
  client?: RegistryClientOptions;
}

export interface P2PHost {
  agent: P2PAgent;
  cache: BlobCache;
  client: RegistryClient;
  close(): Promise<void>;
}

export async function startP2PHost(config: P2PConfig, o: P2PHostOptions = {}): Promise<P2PHost> {
  const client = new RegistryClient(o.client ?? {});
  let cache: BlobCache | undefined;
  try {
    cache = await BlobCache.open({ dir: resolveCacheDir(o.cacheDir), capacityBytes: o.cacheCapacity ?? 4 * 1024 ** 3,
      ...(o.refillUnit ? { refillUnit: o.refillUnit } : {}) });
    const agent = await P2PAgent.start(config, { cache, client });
    const c = cache;
    return {
      agent, cache, client,
      close: async () => {
        await agent.close();
        await c.close();
        await client.close();
      },
    };
  } catch (err) {
    await cache?.close().catch(() => {});
    await client.close().catch(() => {});
    throw err;
  }
}
