/**
 * Commit's copy engine: (source offset, length) pieces are collected, in output order, into a
 * stage buffer; the stage is gathered from the source and appended to the sink while the next one
 * is collected and gathered.
 *
 * Two ways to gather, measured on 50,000 random 4 KiB writes (200 MB of data, source in the
 * page cache, 2 cores):
 * - A source that can read synchronously (a local file) is read piece by piece on this thread:
 *   a pread of 4 KiB costs ~3.6 µs, a read through the thread pool ~10 µs of CPU. Pieces are read
 *   in source order; neighbours closer than SYNC_GAP are read together, gap included. This thread
 *   gathers while the pool writes the previous stage, so reads and writes overlap on two cores.
 *   A read that takes longer than a page-cache hit can (a cold file) would block the event loop
 *   and leave the disk one request deep, so the rest of that stage is gathered the async way.
 * - Any other source is read through its async read() with gap-spanning runs: few calls, but each
 *   stage's runs can cover the whole source (every stage needs pieces from everywhere in a
 *   scattered layer), which is why those stages are large.
 */
import { FormatError } from '../../errors.ts';
import { canReadSync, type ByteSource, type SyncReadable } from '../../io/types.ts';
import type { Sink } from '../../io/sink.ts';


export interface StageTuning {
  /** Bytes per stage (two are allocated); capped by the bytes to copy. */
  stageBytes?: number;
  /** A synchronous read slower than this (ms) is taken for a page-cache miss. */
  slowReadMs?: number;
}

/** Async gathering: 32 MiB stages with 64 KiB gaps spanned (~0.4 s for the layer above, 8 MiB without gaps ~0.9 s). */
const ASYNC_STAGE_BYTES = 32 << 20;
const ASYNC_GAP = 64 << 10;
const ASYNC_READERS = 8;
/** Sync gathering does not re-read the source per stage, so stages can be small. */
const SYNC_STAGE_BYTES = 8 << 20;
/** A gap this small costs less to copy than a second pread. */
const SYNC_GAP = 4 << 10;
/** Longest gap-spanning read (the scratch buffer's size). */
const MAX_RUN = 1 << 20;
/** Sync gathering hands the event loop back this often (ms), so a server in the process keeps answering. */
const YIELD_MS = 4;
/** A page-cache hit of up to MAX_RUN bytes takes well under this (ms); a disk read takes longer. */
const SLOW_READ_MS = 1;
const MIN_STAGE = 32 << 10;

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class StagedCopy {
  /** Two stages: one is gathered while the other is being written. */
  private readonly stages: Uint8Array[];
  private stage: Uint8Array;
  private flip = 0;
  private writing: Promise<void> = Promise.resolve();
  private staged = 0;
  private pSrc: number[] = [];
  private pDst: number[] = [];
  private pLen: number[] = [];
  private readonly scratch: Uint8Array[] = [];
  private readonly file: string;
  private readonly sync: SyncReadable | null;
  private readonly slowReadMs: number;

  /** `total`: the bytes that will be copied, so a small layer does not get full-size stages. */
  constructor(private readonly data: ByteSource, private readonly out: Sink, total: number, tuning: StageTuning = {}) {
    this.file = data.name ?? 'layer data';
    this.sync = canReadSync(data) ? data : null;
    this.slowReadMs = tuning.slowReadMs ?? SLOW_READ_MS;
    const want = tuning.stageBytes ?? (this.sync ? SYNC_STAGE_BYTES : ASYNC_STAGE_BYTES);
    const size = Math.max(Math.min(MIN_STAGE, want), Math.min(want, total));
    this.stages = [new Uint8Array(size), new Uint8Array(size)];
    this.stage = this.stages[0]!;
  }

  /** Queues `n` bytes at `from` in the source as the next bytes of the output. */
  async copy(from: number, n: number): Promise<void> {
    while (n > 0) {
      if (this.staged === this.stage.length) await this.drain();
      const take = Math.min(n, this.stage.length - this.staged);
      const k = this.pSrc.length - 1;
      // Contiguous in both source and output: extend the previous piece.
      if (k >= 0 && this.pSrc[k]! + this.pLen[k]! === from && this.pDst[k]! + this.pLen[k]! === this.staged) {
        this.pLen[k] = this.pLen[k]! + take;
      } else {
        this.pSrc.push(from); this.pDst.push(this.staged); this.pLen.push(take);
      }
      this.staged += take;
      from += take; n -= take;
    }
  }

  /** Gathers and writes what is staged and waits until every write has settled. */
  async finish(): Promise<void> {
    await this.drain();
    await this.writing;
  }

  private async drain(): Promise<void> {
    const count = this.pSrc.length;
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    order.sort((a, b) => this.pSrc[a]! - this.pSrc[b]!);
    if (this.sync) await this.gatherSync(this.sync, order);
    else await this.gatherAsync(order);
    // Writes stay in order: this stage's write starts only after the previous one settled.
    await this.writing;
    if (this.staged > 0) {
      const w = this.out.write(this.stage.subarray(0, this.staged));
      w.catch(() => {}); // reported by the next await of `writing`, not as an unhandled rejection
      this.writing = w;
    }
    this.flip ^= 1;
    this.stage = this.stages[this.flip]!;
    this.staged = 0;
    this.pSrc = []; this.pDst = []; this.pLen = [];
  }

  /**
   * The end (in `order`, exclusive) of the run starting at order[a]: following pieces whose gap
   * to the previous one is at most `gap` bytes (overlaps start a new run), within MAX_RUN.
   */
  private runEnd(order: Uint32Array, a: number, gap: number): number {
    const start = this.pSrc[order[a]!]!;
    let end = start + this.pLen[order[a]!]!;
    let b = a + 1;
    for (; b < order.length; b++) {
      const i = order[b]!;
      const s = this.pSrc[i]!;
      if (s < end || s - end > gap || s + this.pLen[i]! - start > MAX_RUN) break;
      end = s + this.pLen[i]!;
    }
    return b;
  }

  private async gatherSync(src: SyncReadable, order: Uint32Array): Promise<void> {
    let slice = performance.now();
    let reads = 0;
    for (let a = 0; a < order.length;) {
      const b = this.runEnd(order, a, SYNC_GAP);
      const i0 = order[a]!;
      const t0 = performance.now();
      let bytes: number;
      if (b === a + 1) {
        bytes = this.pLen[i0]!;
        this.readSyncExact(src, this.stage, this.pDst[i0]!, bytes, this.pSrc[i0]!);
      } else {
        const start = this.pSrc[i0]!;
        const last = order[b - 1]!;
        const buf = (this.scratch[0] ??= new Uint8Array(MAX_RUN));
        bytes = this.pSrc[last]! + this.pLen[last]! - start;
        this.readSyncExact(src, buf, 0, bytes, start);
        this.scatter(buf, start, order, a, b);
      }
      a = b;
      const now = performance.now();
      // A piece longer than MAX_RUN (a sequential layout) may take proportionally longer.
      if (now - t0 > this.slowReadMs * Math.max(1, bytes / MAX_RUN)) {
        await this.gatherAsync(order, a);
        return;
      }
      if ((++reads & 63) === 0 && now - slice > YIELD_MS) {
        await yieldToLoop();
        slice = performance.now();
      }
    }
  }

  /** Gathers the pieces order[from..] with gap-spanning async reads, several at a time. */
  private async gatherAsync(order: Uint32Array, from = 0): Promise<void> {
    const runs: number[] = [];
    for (let a = from; a < order.length;) {
      const b = this.runEnd(order, a, ASYNC_GAP);
      runs.push(a, b);
      a = b;
    }
    let next = 0;
    const reader = async (slot: number): Promise<void> => {
      while (next < runs.length) {
        const a = runs[next++]!;
        const b = runs[next++]!;
        await this.readRun(order, a, b, slot);
      }
    };
    await Promise.all(Array.from({ length: ASYNC_READERS }, (_, s) => reader(s)));
  }

  private async readRun(order: Uint32Array, a: number, b: number, slot: number): Promise<void> {
    const i0 = order[a]!;
    if (b === a + 1) {
      await this.readExact(this.stage.subarray(this.pDst[i0]!, this.pDst[i0]! + this.pLen[i0]!), this.pSrc[i0]!);
      return;
    }
    const start = this.pSrc[i0]!;
    const last = order[b - 1]!;
    const buf = (this.scratch[slot] ??= new Uint8Array(MAX_RUN)).subarray(0, this.pSrc[last]! + this.pLen[last]! - start);
    await this.readExact(buf, start);
    this.scatter(buf, start, order, a, b);
  }

  /** Copies pieces order[a..b) out of `buf`, which holds the source from `start`, into the stage. */
  private scatter(buf: Uint8Array, start: number, order: Uint32Array, a: number, b: number): void {
    for (let j = a; j < b; j++) {
      const i = order[j]!;
      const at = this.pSrc[i]! - start;
      this.stage.set(buf.subarray(at, at + this.pLen[i]!), this.pDst[i]!);
    }
  }

  private async readExact(dst: Uint8Array, from: number): Promise<void> {
    const n = await this.data.read(dst, from);
    if (n !== dst.length) throw this.truncated(from, n, dst.length);
  }

  private readSyncExact(src: SyncReadable, dst: Uint8Array, at: number, len: number, from: number): void {
    const n = src.readSync(dst, at, len, from);
    if (n !== len) throw this.truncated(from, n, len);
  }

  private truncated(from: number, got: number, wanted: number): FormatError {
    return new FormatError(this.file, from + got, `extent data truncated: wanted ${wanted} bytes at ${from}`);
  }
}
