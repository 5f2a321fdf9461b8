/**
 * Writing a ZFile (formats.md §3) as a Sink: uncompressed bytes in, in any chunking; blocks are
 * compressed in batches on worker threads (in order of arrival, written in order), the jump
 * table and a sealed trailer are appended on close, and on a seekable output the header is
 * rewritten with the final index fields (0x1B, as `overlaybd-commit -z` does); on a pipe the
 * initial 0x13 header stays (as `overlaybd-zfile`) and readers use the trailer.
 */
import { read } from 'node:fs';
import { promisify } from 'node:util';
import type { Sink } from '../../io/sink.ts';
import { crc32c } from '../crc32c.ts';
import { compressBatch, outputBound, type BatchResult, type BatchSpec } from './batch.ts';
import { CompressPool, sharedCompressPool, type PooledResult } from './compress-pool.ts';
import {
  buildHeaderTrailer, FLAG_HEADER, FLAG_HEADER_OVERWRITE, FLAG_SEALED, FLAG_TYPE_DATA, HT_SIZE, type ZFileAlgo,
} from './header.ts';

export interface ZFileWriterOptions {
  algo: ZFileAlgo;
  /** Uncompressed block size: a power of two from 4 KiB to 64 KiB. */
  blockSize: number;
  /** Append a CRC to every block (the header's `verify` byte). */
  checksum: boolean;
  /** Worker threads to use (default: the shared pool, one per core); 0 compresses in-thread. */
  workers?: number;
}

/** Uncompressed bytes per batch handed to one worker. */
const BATCH_BYTES = 1 << 20;
/** Inputs up to this size are compressed in-thread: starting workers would cost more. */
const IN_THREAD_BYTES = 4 << 20;

const readAsync = promisify(read);

export class ZFileWriter implements Sink {
  readonly seekable = false;
  /** Uncompressed bytes written so far. */
  position = 0;
  private readonly spec: BatchSpec;
  private batch: Uint8Array;
  private batchFill = 0;
  private readonly inFlight: Promise<PooledResult>[] = [];
  private readonly freeInputs: Uint8Array[] = [];
  private readonly freeOutputs: Uint8Array[] = [];
  private table = new Uint32Array(1024);
  private blocks = 0;
  /** Where the next compressed block goes in the output. */
  private compressedEnd = HT_SIZE;
  private dispatchedBytes = 0;
  private failed: unknown;
  private closed = false;
  /** The chain of output writes, in batch order; never rejects (a failure lands in `failed`). */
  private writing: Promise<void> = Promise.resolve();

  private readonly maxInFlight: number;

  private constructor(private readonly out: Sink, opts: ZFileWriterOptions,
    private readonly pool: CompressPool | undefined, private readonly ownsPool: boolean) {
    this.spec = { algo: opts.algo, blockSize: opts.blockSize, checksum: opts.checksum };
    this.batch = new Uint8Array(BATCH_BYTES);
    this.maxInFlight = 2 * (pool?.size ?? 1);
  }

  static async create(out: Sink, opts: ZFileWriterOptions): Promise<ZFileWriter> {
    const bs = opts.blockSize;
    if (!Number.isInteger(bs) || bs < 4096 || bs > 65536 || (bs & (bs - 1)) !== 0) {
      throw new RangeError(`ZFile block size must be a power of two from 4K to 64K, got ${bs}`);
    }
    if (opts.algo !== 'lz4' && opts.algo !== 'zstd') throw new RangeError(`unknown ZFile algorithm ${String(opts.algo)}`);
    if (out.position !== 0) throw new RangeError('a ZFile must start at the beginning of its sink');
    let pool: CompressPool | undefined;
    if (opts.workers === undefined) pool = sharedCompressPool();
    else if (opts.workers > 0) pool = new CompressPool(opts.workers);
    const w = new ZFileWriter(out, opts, pool, opts.workers !== undefined);
    await out.write(w.headerTrailer(FLAG_HEADER | FLAG_TYPE_DATA));
    return w;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.closed) throw new Error('ZFile writer is closed');
    this.throwIfFailed();
    let done = 0;
    while (done < data.length) {
      const n = Math.min(data.length - done, this.batch.length - this.batchFill);
      this.batch.set(data.subarray(done, done + n), this.batchFill);
      this.batchFill += n;
      done += n;
      if (this.batchFill === this.batch.length) await this.dispatch();
    }
    this.position += data.length;
  }

  /**
   * Appends `length` bytes of the file open as `fd`, from `offset`: the same as write() with
   * those bytes, but whole batches are read by the compressing workers themselves, so this
   * thread neither reads nor copies them. The file must not shrink meanwhile.
   */
  async writeFromFile(fd: number, offset: number, length: number): Promise<void> {
    if (this.closed) throw new Error('ZFile writer is closed');
    this.throwIfFailed();
    const end = offset + length;
    let pos = offset;
    // Top up a partly filled batch first (a read may come back short), so that worker batches
    // start on a block boundary and after the bytes already buffered.
    while (this.batchFill > 0 && pos < end) pos += await this.readIntoBatch(fd, pos, end);
    if (this.pool && length > IN_THREAD_BYTES) {
      while (end - pos >= BATCH_BYTES) {
        this.throwIfFailed();
        const output = this.freeOutputs.pop() ?? new Uint8Array(outputBound(this.spec, BATCH_BYTES));
        this.track(this.pool.compress(this.spec, { fd, offset: pos }, BATCH_BYTES, output));
        this.position += BATCH_BYTES;
        pos += BATCH_BYTES;
        while (this.inFlight.length >= this.maxInFlight) await this.drainOne();
      }
    }
    while (pos < end) pos += await this.readIntoBatch(fd, pos, end);
  }

  /** Reads from the file into the current batch (up to its end or `end`), dispatching it when full. */
  private async readIntoBatch(fd: number, pos: number, end: number): Promise<number> {
    const want = Math.min(end - pos, this.batch.length - this.batchFill);
    const { bytesRead } = await readAsync(fd, this.batch, this.batchFill, want, pos);
    if (bytesRead === 0) throw new Error(`input ended at offset ${pos}, ${end - pos} bytes short of the length asked for`);
    this.batchFill += bytesRead;
    this.position += bytesRead;
    if (this.batchFill === this.batch.length) await this.dispatch();
    return bytesRead;
  }

  pwrite(): Promise<void> {
    return Promise.reject(new Error('a ZFile writer only appends'));
  }

  async sync(): Promise<void> {
    await this.out.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.batchFill > 0) await this.dispatch();
      while (this.inFlight.length > 0) await this.drainOne();
      await this.writing;
      this.throwIfFailed();
      const tableBytes = new Uint8Array(this.table.buffer, 0, 4 * this.blocks);
      const indexOffset = this.compressedEnd;
      const indexCrc = crc32c(tableBytes, 0);
      await this.out.write(tableBytes.slice());
      await this.out.write(this.headerTrailer(FLAG_TYPE_DATA | FLAG_SEALED, indexOffset, indexCrc));
      if (this.out.seekable) {
        await this.out.pwrite(this.headerTrailer(FLAG_HEADER | FLAG_TYPE_DATA | FLAG_HEADER_OVERWRITE, indexOffset, indexCrc), 0);
      }
    } finally {
      // After a failure, let the batches still out finish before the pool goes (their results are dropped).
      await Promise.allSettled(this.inFlight.splice(0));
      await this.writing; // never rejects: an output write still under way ends before the sink closes
      if (this.ownsPool) await this.pool?.close();
      await this.out.close();
    }
  }

  private headerTrailer(flags: number, indexOffset = 0, indexCrc = 0): Uint8Array {
    const final = (flags & FLAG_HEADER) === 0 || (flags & FLAG_HEADER_OVERWRITE) !== 0;
    return buildHeaderTrailer({
      flags, indexOffset: final ? indexOffset : 0, indexSize: final ? this.blocks : 0,
      originalSize: final ? this.position : 0, indexCrc: final ? indexCrc : 0,
      blockSize: this.spec.blockSize, algo: this.spec.algo, verify: this.spec.checksum,
    });
  }

  /** Hands the full (or final) batch on: to the pool when big enough, else compressed here. */
  private async dispatch(): Promise<void> {
    const input = this.batch;
    const length = this.batchFill;
    this.batch = this.freeInputs.pop() ?? new Uint8Array(BATCH_BYTES);
    this.batchFill = 0;
    const output = this.freeOutputs.pop() ?? new Uint8Array(outputBound(this.spec, BATCH_BYTES));
    this.dispatchedBytes += length;
    if (!this.pool || (this.dispatchedBytes <= IN_THREAD_BYTES && this.inFlight.length === 0)) {
      const r = compressBatch(this.spec, input.subarray(0, length), output);
      this.freeInputs.push(input);
      await this.writing;
      this.enqueueAppend(r);
      return;
    }
    this.track(this.pool.compress(this.spec, input, length, output));
    while (this.inFlight.length >= this.maxInFlight) await this.drainOne();
  }

  private track(job: Promise<PooledResult>): void {
    job.catch((err: unknown) => { this.failed ??= err; });
    this.inFlight.push(job);
  }

  /** Takes the oldest batch's result and queues its output behind the previous batch's write. */
  private async drainOne(): Promise<void> {
    const r = await this.inFlight.shift()!;
    if (r.input) this.freeInputs.push(r.input);
    // One write in flight at a time bounds the buffers held; this one runs while workers compress.
    await this.writing;
    this.enqueueAppend(r);
  }

  /**
   * Records the batch's block lengths now (batches arrive in order) and writes its bytes after
   * the write before it, without waiting: the workers go on compressing meanwhile.
   */
  private enqueueAppend(r: BatchResult): void {
    const n = r.lengths.length;
    if (this.blocks + n > this.table.length) {
      const grown = new Uint32Array(Math.max(this.table.length * 2, this.blocks + n));
      grown.set(this.table.subarray(0, this.blocks));
      this.table = grown;
    }
    this.table.set(r.lengths, this.blocks);
    this.blocks += n;
    this.compressedEnd += r.outLength;
    this.writing = this.writing.then(async () => {
      if (this.failed !== undefined) return;
      await this.out.write(r.output.subarray(0, r.outLength));
      this.freeOutputs.push(r.output);
    }).catch((err: unknown) => { this.failed ??= err; });
  }

  private throwIfFailed(): void {
    if (this.failed !== undefined) throw this.failed;
  }
}
