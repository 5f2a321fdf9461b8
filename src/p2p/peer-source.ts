/**
 * One blob read from one peer (a parent agent or the root) by HTTP Range requests over a pooled
 * undici connection. Every answer is checked for its status and Content-Range and the body for
 * its length, so a broken peer fails the read (and the upstream list moves on) instead of
 * returning wrong-sized data; the bytes themselves are checked above (ZFile CRCs, blob digest).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Pool } from 'undici';
import { PLAIN_SOURCE, type ByteSource } from '../io/types.ts';
import { blobUrlPath, formatPath, PATH_HEADER, REPOSITORY_HEADER, SIZE_HEADER } from './protocol.ts';

/** The peers a request being served came through, so the requests it causes upstream carry them on. */
export const requestPath = new AsyncLocalStorage<readonly string[]>();

export interface PeerTarget {
  /** `host:port` */
  readonly address: string;
  readonly pool: Pool;
}

/** One connection pool per peer, shared by every blob read from it. */
export class PeerPools {
  private readonly pools = new Map<string, Pool>();
  constructor(private readonly opts: { timeoutMs: number; connections?: number }) {}

  get(address: string): PeerTarget {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new Pool(`http://${address}`, {
        connections: this.opts.connections ?? 8,
        headersTimeout: this.opts.timeoutMs, bodyTimeout: this.opts.timeoutMs,
        connectTimeout: Math.min(this.opts.timeoutMs, 3000),
      });
      this.pools.set(address, pool);
    }
    return { address, pool };
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}

export interface PeerBlob {
  registry: string;
  repository: string;
  digest: string;
  size: number;
}

/**
 * A large read is asked for in pieces of this size, all at once: every hop of the tree stores a
 * piece before forwarding it, so small pieces keep the pipeline full (a 4 MiB read coalesced by
 * the cache would otherwise wait 4 MiB of transfer per level before its first byte moved on).
 */
export const PIECE_BYTES = 256 * 1024;

export class PeerSource implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  readonly name: string;
  readonly size: number;

  constructor(private readonly peer: PeerTarget, private readonly blob: PeerBlob, private readonly self: string, private readonly token: string,
    private readonly pieceBytes = PIECE_BYTES) {
    this.size = blob.size;
    this.name = `peer ${peer.address}`;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size || dst.length === 0) return 0;
    const n = Math.min(dst.length, this.size - offset);
    if (n <= this.pieceBytes) return this.readPiece(dst.subarray(0, n), offset);
    const pieces: Array<Promise<number>> = [];
    for (let at = offset; at < offset + n;) {
      const end = Math.min(offset + n, (Math.floor(at / this.pieceBytes) + 1) * this.pieceBytes);
      pieces.push(this.readPiece(dst.subarray(at - offset, end - offset), at));
      at = end;
    }
    const settled = await Promise.allSettled(pieces);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return n;
  }

  /** One Range request for exactly dst.length bytes at `offset` (within the blob). */
  private async readPiece(dst: Uint8Array, offset: number): Promise<number> {
    const n = dst.length;
    const last = offset + n - 1;
    const path = [...(requestPath.getStore() ?? []), this.self];
    const res = await this.peer.pool.request({
      method: 'GET', path: blobUrlPath(this.blob.digest),
      headers: {
        range: `bytes=${offset}-${last}`,
        [REPOSITORY_HEADER]: `${this.blob.registry}/${this.blob.repository}`,
        [SIZE_HEADER]: String(this.size),
        [PATH_HEADER]: formatPath(path),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
    });
    const fail = async (problem: string): Promise<never> => {
      await res.body.dump().catch(() => {});
      throw new Error(`${this.name}: ${this.blob.digest} bytes=${offset}-${last}: ${problem}`);
    };
    if (res.statusCode !== 206) {
      const text = res.statusCode >= 400 ? (await res.body.text().catch(() => '')).slice(0, 200) : '';
      return fail(`answered ${res.statusCode}${text ? ` (${text.trim()})` : ''}`);
    }
    const cr = res.headers['content-range'];
    if (cr !== `bytes ${offset}-${last}/${this.size}`) return fail(`answered with Content-Range ${JSON.stringify(cr ?? null)}`);
    let at = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (at + chunk.length > n) return fail(`body longer than the ${n} bytes asked for`);
      dst.set(chunk, at);
      at += chunk.length;
    }
    if (at !== n) throw new Error(`${this.name}: ${this.blob.digest} bytes=${offset}-${last}: body truncated at ${at} of ${n} bytes`);
    return n;
  }

  /** The pool is shared; closing one blob leaves it open. */
  async close(): Promise<void> {}
}
