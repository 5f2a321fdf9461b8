/**
 * One blob readable from several places, tried in order: a P2P parent, mirrors (a registry
 * pull-through cache, an HTTP proxy such as dfdaemon), and last the origin registry. A read goes
 * to the first healthy upstream; an error or a read slower than that upstream's timeout moves it
 * to the next one, and the failed upstream is remembered as down for a while (UpstreamHealth),
 * so the reader sees a slower read, never a failed one, unless the last upstream fails too.
 *
 * An upstream that is not the last reads into a scratch buffer that is copied on success: a read
 * abandoned at its timeout may still complete later, and must not write into the caller's buffer
 * after the next upstream has filled it. The last upstream (the origin) gets no timeout here; its
 * client has its own.
 *
 * Bytes are never trusted because of where they came from: the stages above check them (ZFile
 * CRCs, the blob digest of the background download) and ask for a range again through
 * `refetch` (Refetchable), which reads it from the next upstream after the one that served it.
 */
import type { Refetchable } from './refetch.ts';
import { PLAIN_SOURCE, type ByteSource } from './types.ts';
import { UpstreamHealth } from './upstream-health.ts';

export interface OrderedUpstream {
  /** Names the upstream in health, logs and errors (a peer address, a mirror URL). */
  readonly name: string;
  readonly source: ByteSource;
  /** A read slower than this moves to the next upstream (default: the set's timeoutMs). */
  readonly timeoutMs?: number;
}

export interface OrderedUpstreamsOptions {
  /** Default per-upstream timeout in ms for every upstream but the last (default 5000; 0: none). */
  timeoutMs?: number;
  /** Shared across blobs so an upstream found dead is skipped everywhere. */
  health?: UpstreamHealth;
  /** Called after a fallback (logs). */
  onFallback?: (e: { from: string; to: string | undefined; offset: number; reason: string }) => void;
}

export interface UpstreamCounters { reads: number; bytes: number; failures: number }

/** How many recent reads `servedBy` remembers (refetches follow reads closely). */
const SERVED_MEMORY = 256;

/** A recent read: which upstream served [start, end). */
interface Served { start: number; end: number; index: number }

export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

export class OrderedUpstreams implements ByteSource, Refetchable {
  readonly size: number;
  readonly name: string;
  readonly caps = PLAIN_SOURCE;
  readonly health: UpstreamHealth;
  readonly counters: Map<string, UpstreamCounters>;
  /** Recent reads, oldest first: a checker refetches a piece (a chunk) of a range it was served. */
  private readonly served: Served[] = [];
  private readonly timeoutMs: number;

  constructor(private readonly upstreams: readonly OrderedUpstream[], private readonly opts: OrderedUpstreamsOptions = {}) {
    if (upstreams.length === 0) throw new Error('ordered upstreams: need at least one upstream');
    const last = upstreams[upstreams.length - 1]!;
    for (const u of upstreams) {
      if (u.source.size !== last.source.size) {
        throw new Error(`ordered upstreams: ${u.name} has ${u.source.size} bytes, ${last.name} has ${last.source.size}`);
      }
    }
    this.size = last.source.size;
    this.name = last.source.name ?? last.name;
    this.health = opts.health ?? new UpstreamHealth();
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.counters = new Map(upstreams.map((u) => [u.name, { reads: 0, bytes: 0, failures: 0 }]));
  }

  read(dst: Uint8Array, offset: number): Promise<number> {
    return this.readSkipping(dst, offset, undefined);
  }

  refetch(dst: Uint8Array, offset: number, reason: string): Promise<number> {
    const rejected = this.servedIndex(offset);
    if (rejected === undefined || this.upstreams.length === 1) return this.readSkipping(dst, offset, undefined);
    const u = this.upstreams[rejected]!;
    this.counters.get(u.name)!.failures++;
    if (rejected < this.upstreams.length - 1) this.health.markDown(u.name, `served a rejected range at ${offset}: ${reason}`);
    return this.readSkipping(dst, offset, rejected);
  }

  servedBy(offset: number): string | undefined {
    const i = this.servedIndex(offset);
    return i === undefined ? undefined : this.upstreams[i]!.name;
  }

  /** The upstream of the most recent read that covered `offset`. */
  private servedIndex(offset: number): number | undefined {
    for (let k = this.served.length - 1; k >= 0; k--) {
      const r = this.served[k]!;
      if (offset >= r.start && offset < r.end) return r.index;
    }
    return undefined;
  }

  /** Tries the healthy upstreams in order (never `skip`); the last one is always tried. */
  private async readSkipping(dst: Uint8Array, offset: number, skip: number | undefined): Promise<number> {
    const lastIndex = this.upstreams.length - 1;
    const errors: string[] = [];
    for (let i = 0; i <= lastIndex; i++) {
      if (i === skip && i !== lastIndex) continue;
      const u = this.upstreams[i]!;
      if (i < lastIndex && !this.health.isHealthy(u.name)) continue;
      const c = this.counters.get(u.name)!;
      c.reads++;
      try {
        const n = i === lastIndex ? await u.source.read(dst, offset) : await this.tryUpstream(u, dst, offset);
        c.bytes += n;
        this.remember(offset, n, i);
        return n;
      } catch (err) {
        c.failures++;
        const reason = (err as Error).message;
        errors.push(`${u.name}: ${reason}`);
        if (i === lastIndex) break;
        this.health.markDown(u.name, reason);
        this.opts.onFallback?.({ from: u.name, to: this.nextName(i, skip), offset, reason });
      }
    }
    throw new Error(`${this.name}: no upstream could read ${dst.length} bytes at ${offset}: ${errors.join('; ')}`);
  }

  private nextName(i: number, skip: number | undefined): string | undefined {
    for (let j = i + 1; j < this.upstreams.length; j++) {
      if (j === skip && j !== this.upstreams.length - 1) continue;
      if (j === this.upstreams.length - 1 || this.health.isHealthy(this.upstreams[j]!.name)) return this.upstreams[j]!.name;
    }
    return undefined;
  }

  private async tryUpstream(u: OrderedUpstream, dst: Uint8Array, offset: number): Promise<number> {
    const scratch = new Uint8Array(dst.length);
    const timeoutMs = u.timeoutMs ?? this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const read = u.source.read(scratch, offset);
    try {
      const n = timeoutMs > 0
        ? await Promise.race([read, new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new TimeoutError(`no answer within ${timeoutMs} ms`)), timeoutMs);
        })])
        : await read;
      const want = Math.min(dst.length, Math.max(0, this.size - offset));
      if (n !== want) throw new Error(`short read: ${n} of ${want} bytes`);
      dst.set(scratch.subarray(0, n));
      return n;
    } catch (err) {
      read.catch(() => {}); // an abandoned read may still fail later
      throw err;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private remember(offset: number, length: number, index: number): void {
    this.served.push({ start: offset, end: offset + Math.max(1, length), index });
    if (this.served.length > SERVED_MEMORY) this.served.shift();
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled(this.upstreams.map((u) => u.source.close()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
