/**
 * The blobs a node serves to its children (or, on the root, to every host): each is a handle on
 * the node's own BlobCache, so a range the node has is answered from disk, and a range it does
 * not have is fetched once from its upstreams and kept. Two requests for a range being fetched
 * wait for the same fetch (the cache coalesces in-flight units per blob, also with the node's own
 * reads of the image, which share the blob's cached source). Handles close after a while unused.
 */
import type { BlobCache, CacheHandle } from '../io/cache.ts';
import type { ByteSource } from '../io/types.ts';
import { log } from '../util/log.ts';
import type { PeerBlob } from './peer-source.ts';

/** Where a blob's misses are fetched from (the node's parents then the registry; the root: the registry). */
export type UpstreamFactory = (blob: PeerBlob) => ByteSource;

interface Open { handle: Promise<CacheHandle>; timer: NodeJS.Timeout | undefined; users: number }

export class BlobServer {
  private readonly open = new Map<string, Open>();
  private closed = false;

  constructor(private readonly cache: BlobCache, private readonly upstream: UpstreamFactory, private readonly idleMs = 60_000) {}

  /** Runs `use` with the blob's cache handle open. */
  async with<T>(blob: PeerBlob, use: (h: CacheHandle) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('p2p: blob server is closed');
    let o = this.open.get(blob.digest);
    if (!o) {
      const opening = this.cache.open(blob.digest, blob.size, this.upstream(blob));
      o = { handle: opening, timer: undefined, users: 0 };
      this.open.set(blob.digest, o);
      opening.catch(() => { if (this.open.get(blob.digest) === o) this.open.delete(blob.digest); });
    }
    const entry = o;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.users++;
    try {
      const h = await entry.handle;
      if (h.size !== blob.size) throw new Error(`p2p: ${blob.digest} is ${h.size} bytes, the request says ${blob.size}`);
      return await use(h);
    } finally {
      entry.users--;
      if (entry.users === 0 && !this.closed) {
        entry.timer = setTimeout(() => { void this.release(blob.digest, entry); }, this.idleMs);
        entry.timer.unref();
      }
    }
  }

  private async release(digest: string, entry: Open): Promise<void> {
    if (this.open.get(digest) !== entry || entry.users > 0) return;
    this.open.delete(digest);
    await (await entry.handle).close().catch((err: unknown) => log.warn({ digest, err: String(err) }, 'p2p: closing a served blob'));
  }

  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.open.values()];
    this.open.clear();
    for (const e of entries) if (e.timer) clearTimeout(e.timer);
    await Promise.all(entries.map(async (e) => { await (await e.handle.catch(() => undefined))?.close(); }));
  }
}
