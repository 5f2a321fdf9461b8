/**
 * Chunk verification of fetched bytes: a filter over an upstream (registry, mirror, peer) that
 * checks every byte against a table of SHA-256 digests of fixed-size chunks before it goes up
 * (into the block cache or to a reader). A read is widened to whole chunks, since a digest can
 * only check a whole chunk; the cache's refill unit is a multiple of the chunk size, so its
 * fetches are not widened at all. The bytes after the chunks (the table's own tar member) were
 * checked as a whole when the table was loaded and are served from memory.
 *
 * A chunk that fails is asked for again once, through the refetch contract (refetch.ts: another
 * upstream when the source has several, else the same one again); if it fails again the read
 * fails with EIO naming the layer, the chunk and the upstream, logged once. A fetch the upstream
 * could not complete (a cut or mislabelled answer, after the client's own retries and the other
 * upstreams) fails the same way, naming the chunks it was for. Wrong bytes never leave this filter.
 */
import { createHash } from 'node:crypto';
import { DiskError, errorMessage } from '../errors.ts';
import { log } from '../util/log.ts';
import { SourceFilter } from './filter.ts';
import { canRefetch } from './refetch.ts';
import { canReadProgressive, PLAIN_SOURCE, type ByteSource, type SourceCaps } from './types.ts';

const DIGEST = 32;

export interface ChunkTable {
  chunkSize: number;
  /** Bytes [0, covered) are checked per chunk. */
  covered: number;
  /** One 32-byte SHA-256 digest per chunk. */
  digests: Uint8Array;
  /** The blob's bytes [covered, size), already verified. */
  tail: Uint8Array;
}

export interface VerifyCounters {
  /** Chunks that matched (first or second time). */
  chunksVerified: number;
  /** Chunks that did not match when first fetched. */
  mismatches: number;
  /** Chunks that matched after a refetch. */
  recovered: number;
  /** Reads failed because a chunk did not match twice. */
  failures: number;
  /** Reads failed because the upstream could not deliver the chunks at all (error, short answer). */
  fetchFailures: number;
}

/**
 * The chunks [first, last] covering [offset, end) of a blob whose first `covered` bytes are
 * chunked, as the byte window to fetch: [start, stop). `end` must be > offset and ≤ covered.
 */
export function chunkWindow(offset: number, end: number, chunkSize: number, covered: number): { first: number; last: number; start: number; stop: number } {
  const first = Math.floor(offset / chunkSize);
  const last = Math.floor((end - 1) / chunkSize);
  return { first, last, start: first * chunkSize, stop: Math.min(covered, (last + 1) * chunkSize) };
}

/** Whether `bytes` (chunk `index`) hashes to its digest in `digests`. */
export function chunkMatches(bytes: Uint8Array, digests: Uint8Array, index: number): boolean {
  const got = createHash('sha256').update(bytes).digest();
  const want = digests.subarray(index * DIGEST, (index + 1) * DIGEST);
  return Buffer.compare(got, want) === 0;
}

/**
 * The chunk checks of one fetch into `buf` (chunk `first` onward): `onFilled(n)` hashes every
 * chunk that is whole within the first n bytes and not yet checked; `onFilled(0)` (a retry
 * rewriting `buf`) forgets what was checked.
 */
class ArrivalCheck {
  private checked = 0;
  /** Table indexes of the chunks that did not match. */
  bad: number[] | undefined;

  constructor(private readonly buf: Uint8Array, private readonly first: number, private readonly chunkSize: number,
    private readonly digests: Uint8Array) {}

  readonly onFilled = (n: number): void => {
    if (n < this.checked) {
      this.checked = 0;
      this.bad = undefined;
    }
    const { buf, chunkSize } = this;
    while (this.checked < buf.length) {
      const end = Math.min(buf.length, this.checked + chunkSize);
      if (end > n) return;
      const i = this.first + this.checked / chunkSize;
      if (!chunkMatches(buf.subarray(this.checked, end), this.digests, i)) (this.bad ??= []).push(i);
      this.checked = end;
    }
  };
}

export class VerifiedSource extends SourceFilter {
  readonly counters: VerifyCounters = { chunksVerified: 0, mismatches: 0, recovered: 0, failures: 0, fetchFailures: 0 };

  /** `layer` names the layer in errors and logs. */
  constructor(next: ByteSource, private readonly table: ChunkTable, private readonly layer: string) {
    super(next);
    if (table.covered + table.tail.length !== next.size) {
      throw new RangeError(`${layer}: verify table covers ${table.covered} + ${table.tail.length} bytes, the blob has ${next.size}`);
    }
    if (table.digests.length !== Math.ceil(table.covered / table.chunkSize) * DIGEST) {
      throw new RangeError(`${layer}: verify table has ${table.digests.length / DIGEST} digests for ${table.covered} bytes in ${table.chunkSize}-byte chunks`);
    }
  }

  /** Reads are widened and checked here, so neither synchronous reads nor prefetches pass through. */
  override get caps(): SourceCaps {
    return PLAIN_SOURCE;
  }

  override async read(dst: Uint8Array, offset: number): Promise<number> {
    const size = this.size;
    if (offset >= size || dst.length === 0) return 0;
    const end = Math.min(size, offset + dst.length);
    const { covered, chunkSize } = this.table;
    if (offset < covered) {
      const coveredEnd = Math.min(end, covered);
      const w = chunkWindow(offset, coveredEnd, chunkSize, covered);
      // A chunk-aligned read is fetched straight into the caller's buffer (the cache's case).
      const direct = w.start === offset && w.stop === coveredEnd;
      const buf = direct ? dst.subarray(0, w.stop - w.start) : new Uint8Array(w.stop - w.start);
      // Chunks are hashed as they arrive when the upstream reports its progress (an HTTP body):
      // all but the last are checked while later bytes are still on the wire.
      const check = new ArrivalCheck(buf, w.first, chunkSize, this.table.digests);
      const next = this.next;
      let n: number;
      try {
        n = canReadProgressive(next) ? await next.readProgressive(buf, w.start, check.onFilled) : await next.read(buf, w.start);
      } catch (err) {
        throw this.unfetched(w, err);
      }
      if (n !== buf.length) throw this.unfetched(w, new Error(`returned ${n} bytes, expected ${buf.length}`));
      check.onFilled(buf.length);
      this.counters.chunksVerified += w.last - w.first + 1 - (check.bad?.length ?? 0);
      for (const i of check.bad ?? []) {
        const at = i * chunkSize - w.start;
        await this.recover(buf.subarray(at, Math.min(buf.length, at + chunkSize)), i);
      }
      if (!direct) dst.set(buf.subarray(offset - w.start, coveredEnd - w.start), 0);
    }
    if (end > covered) {
      const from = Math.max(offset, covered);
      dst.set(this.table.tail.subarray(from - covered, end - covered), from - offset);
    }
    return end - offset;
  }

  private upstreamAt(offset: number): string {
    const next = this.next;
    return (canRefetch(next) ? next.servedBy?.(offset) : undefined) ?? next.name ?? 'upstream';
  }

  /** The EIO (logged) for a fetch of chunks [w.first, w.last] that failed or came back short. */
  private unfetched(w: { first: number; last: number; start: number; stop: number }, cause: unknown): DiskError {
    this.counters.fetchFailures++;
    const upstream = this.upstreamAt(w.start);
    const chunks = w.first === w.last ? `chunk ${w.first}` : `chunks ${w.first}..${w.last}`;
    const why = errorMessage(cause);
    log.error({ layer: this.layer, chunk: w.first, lastChunk: w.last, offset: w.start, length: w.stop - w.start, upstream, err: why },
      'verify: the upstream could not deliver the chunks: the read fails with EIO');
    return new DiskError('EIO', `${this.layer}: ${chunks} (bytes ${w.start}..${w.stop}) from ${upstream} could not be fetched: ${why}`, { cause });
  }

  /** Chunk `index` did not match: fetch it once more (from another upstream if there is one), else fail. */
  private async recover(chunk: Uint8Array, index: number): Promise<void> {
    this.counters.mismatches++;
    const at = index * this.table.chunkSize;
    const first = this.upstreamAt(at);
    const reason = `chunk ${index} failed its sha256 check`;
    const next = this.next;
    let n: number;
    try {
      n = canRefetch(next) ? await next.refetch(chunk, at, reason) : await next.read(chunk, at);
    } catch {
      n = -1;
    }
    if (n === chunk.length && chunkMatches(chunk, this.table.digests, index)) {
      this.counters.recovered++;
      this.counters.chunksVerified++;
      log.warn({ layer: this.layer, chunk: index, offset: at, upstream: first, refetchedFrom: this.upstreamAt(at) },
        'verify: a chunk from upstream did not match its digest; the refetched copy did');
      return;
    }
    this.counters.failures++;
    const again = this.upstreamAt(at);
    const from = again === first ? first : `${first}, then ${again}`;
    log.error({ layer: this.layer, chunk: index, offset: at, length: chunk.length, upstream: from },
      'verify: chunk does not match its digest, again after refetching: the read fails with EIO');
    throw new DiskError('EIO', `${this.layer}: chunk ${index} (bytes ${at}..${at + chunk.length}) from ${from} ` +
      'does not match its digest in the verify table, again after refetching');
  }
}
