/**
 * `dadi p2p root`: the data center's caching server in front of the registry. Hosts at the top
 * of a blob's tree (and any host whose ancestors are down) fetch from it; it fetches each range
 * it misses from the registry once, with this node's credentials for the repository the request
 * names, and keeps it in its BlobCache. Peers must present the shared token, so only members can
 * read through the root's credentials.
 */
import type { BlobCache } from '../io/cache.ts';
import { HttpRangeSource } from '../registry/blob-source.ts';
import type { RegistryClient } from '../registry/client.ts';
import { BlobServer } from './blob-server.ts';
import { PeerServer } from './peer-server.ts';

export interface RootOptions {
  /** `host:port` to listen on; also the root's name in paths. */
  listen: string;
  token: string;
  cache: BlobCache;
  client: RegistryClient;
}

export interface RunningRoot {
  /** `host:port` actually bound. */
  address: string;
  server: PeerServer;
  close(): Promise<void>;
}

export async function startRoot(o: RootOptions): Promise<RunningRoot> {
  const blobs = new BlobServer(o.cache, (b) => HttpRangeSource.fromDescriptor(o.client, b, b));
  const server = new PeerServer({ self: o.listen, token: o.token, blobs });
  const addr = await server.listen(o.listen);
  return {
    address: `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    server,
    close: async () => {
      await server.close();
      await blobs.close();
    },
  };
}
