/**
 * The transmission phase of one connection: requests are parsed as bytes arrive, each is sent to
 * the Disk without waiting for earlier ones, and replies go out as each completes (out of order).
 * In-flight bytes per connection are bounded: past the bound the socket stops being read.
 * A malformed stream (bad magic, oversized write) ends this connection only.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { hasExtents, type Disk } from '../io/types.ts';
import { errorMessage } from '../errors.ts';
import type { BufferPool } from './buffer-pool.ts';
import type { ByteQueue } from './byte-queue.ts';
import type { Session } from './handshake.ts';
import { blockStatus, cacheRange, sparseRead, writeZeroes } from './operations.ts';
import { errorReply, readReplyHeader, writeSimpleReply } from './replies.ts';
import * as P from './protocol.ts';
import { refusal } from './validate.ts';

export interface TransmissionOptions {
  pool: BufferPool;
  log: Logger;
  /** Bytes of reads and writes in flight (plus unsent replies) before the socket is paused. */
  maxInFlightBytes: number;
  /** Structured reads at least this long consult Disk.extents to send holes as hole chunks. */
  holeThreshold: number;
  /** Told each time a connection stops reading because it is over its in-flight bound. */
  onBackpressure?: () => void;
}

/** Accounted per request on top of its payload, so floods of tiny requests are bounded too. */
const REQUEST_OVERHEAD = 256;
const MAX_IN_FLIGHT_REQUESTS = 4096;
const JOB_POOL = 256;

/** One request in flight. Pooled; its completion callbacks are bound once, not per request. */
class Job {
  type = 0;
  flags = 0;
  hi = 0;
  lo = 0;
  offset = 0;
  length = 0;
  cost = 0;
  /** Pooled buffer owned by this job (read reply or copied write payload). */
  buf: Buffer | null = null;
  /** Where the disk reads into / writes from. */
  data: Buffer | null = null;
  /** A prepared structured reply (sparse read, block status). */
  chunks: Buffer[] | null = null;
  readonly done = (): void => this.owner.complete(this, undefined);
  readonly failed = (err: unknown): void => this.owner.complete(this, err ?? new Error('failed'));
  readonly flushThenDone = (): void => {
    this.owner.disk.flush().then(this.done, this.failed);
  };
  readonly setChunks = (chunks: Buffer[] | Buffer): void => {
    this.chunks = Array.isArray(chunks) ? chunks : [chunks];
    this.owner.complete(this, undefined);
  };
  constructor(readonly owner: Transmission) {}
}

export class Transmission {
  private readonly header = Buffer.allocUnsafe(P.REQUEST_HEADER_SIZE);
  private readonly freeJobs: Job[] = [];
  /** Pooled buffers (or null) in the order of socket writes, released as each write completes. */
  private readonly written: Array<Buffer | null> = [];
  private inFlight = 0;
  private inFlightBytes = 0;
  /** A WRITE whose payload has not fully arrived. */
  private awaitingPayload: Job | null = null;
  /** Payload bytes of a rejected WRITE still to be dropped. */
  private discard = 0;
  private state: 'open' | 'draining' | 'closed' = 'open';
  private paused = false;
  private parsing = false;
  private corked = false;
  private ending = false;
  private finished = false;

  constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    readonly disk: Disk,
    private readonly session: Session,
    private readonly opts: TransmissionOptions,
    private readonly onFinished: () => void,
  ) {
    socket.on('drain', this.onDrain);
  }

  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Called with bytes received; parses and dispatches whatever requests are complete. */
  onData(chunk: Buffer): void {
    if (this.state !== 'open') return;
    this.queue.push(chunk);
    this.parse();
  }

  /** Stops taking requests, lets in-flight ones reply, then closes (server shutdown). */
  drain(): void {
    if (this.state === 'open') this.stopReading();
    this.maybeEnd();
  }

  /** Forgets a write whose payload will never arrive (closed socket or protocol error). */
  private dropAwaitingPayload(): void {
    const job = this.awaitingPayload;
    if (!job) return;
    this.awaitingPayload = null;
    this.inFlight--;
    this.inFlightBytes -= job.cost;
    this.recycle(job);
  }

  /** The socket is gone: in-flight work still completes, replies are dropped, buffers released. */
  onSocketClosed(): void {
    this.state = 'closed';
    this.queue.clear();
    this.written.length = 0;
    this.dropAwaitingPayload();
    this.maybeFinish();
  }

  private parse(): void {
    if (this.parsing) return;
    this.parsing = true;
    try {
      while (this.state === 'open') {
        if (this.discard > 0) {
          this.discard -= this.queue.skip(this.discard);
          if (this.discard > 0) return;
          continue;
        }
        const pending = this.awaitingPayload;
        if (pending !== null) {
          if (this.queue.length < pending.length) return;
          this.awaitingPayload = null;
          this.takePayload(pending);
          this.start(pending);
          continue;
        }
        if (this.overBudget()) {
          this.pause();
          return;
        }
        if (this.queue.length < P.REQUEST_HEADER_SIZE) return;
        this.request(this.queue.take(P.REQUEST_HEADER_SIZE, this.header));
      }
    } finally {
      this.parsing = false;
    }
  }

  private request(h: Buffer): void {
    if (h.readUInt32BE(0) !== P.REQUEST_MAGIC) {
      this.protocolError(`bad request magic 0x${h.readUInt32BE(0).toString(16)}`);
      return;
    }
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const hi = h.readUInt32BE(8);
    const lo = h.readUInt32BE(12);
    const offset = h.readUInt32BE(16) * 0x100000000 + h.readUInt32BE(20);
    const length = h.readUInt32BE(24);
    if (type === P.CMD_DISC) {
      this.stopReading();
      this.maybeEnd();
      return;
    }
    const problem = refusal(type, flags, offset, length, this.session, this.disk);
    if (type === P.CMD_WRITE && length > P.MAX_BLOCK_SIZE) {
      // Reading (or skipping) an arbitrary payload is what a hostile client wants: hang up.
      this.replyError(hi, lo, P.EINVAL, problem![1]);
      this.protocolError(`WRITE of ${length} bytes exceeds the maximum ${P.MAX_BLOCK_SIZE}`);
      return;
    }
    if (problem !== null) {
      this.replyError(hi, lo, problem[0], problem[1]);
      if (type === P.CMD_WRITE) this.discard = length;
      return;
    }
    const job = this.freeJobs.pop() ?? new Job(this);
    job.type = type;
    job.flags = flags;
    job.hi = hi;
    job.lo = lo;
    job.offset = offset;
    job.length = length;
    job.cost = REQUEST_OVERHEAD + (type === P.CMD_READ || type === P.CMD_WRITE ? length : 0);
    this.inFlight++;
    this.inFlightBytes += job.cost;
    if (type === P.CMD_WRITE) this.awaitingPayload = job;
    else this.start(job);
  }

  private takePayload(job: Job): void {
    if (this.queue.contiguous(job.length)) {
      job.data = this.queue.take(job.length);
    } else {
      job.buf = this.opts.pool.acquire(job.length);
      job.data = job.buf.subarray(0, job.length);
      this.queue.copyOut(job.data, job.length);
    }
  }

  private start(job: Job): void {
    const disk = this.disk;
    const fua = (job.flags & P.CMD_FLAG_FUA) !== 0;
    try {
      switch (job.type) {
        case P.CMD_READ: {
          job.buf = this.opts.pool.acquire(job.length);
          job.data = job.buf.subarray(0, job.length);
          if (this.session.structured && hasExtents(disk) && job.length >= this.opts.holeThreshold && (job.flags & P.CMD_FLAG_DF) === 0) {
            sparseRead(disk, job.data, job.offset, job.hi, job.lo).then(job.setChunks, job.failed);
          } else {
            disk.read(job.data, job.offset).then(job.done, job.failed);
          }
          break;
        }
        case P.CMD_WRITE:
          disk.write(job.data!, job.offset).then(fua ? job.flushThenDone : job.done, job.failed);
          break;
        case P.CMD_FLUSH:
          disk.flush().then(job.done, job.failed);
          break;
        case P.CMD_TRIM:
          disk.trim(job.offset, job.length).then(fua ? job.flushThenDone : job.done, job.failed);
          break;
        case P.CMD_WRITE_ZEROES:
          ((job.flags & P.CMD_FLAG_NO_HOLE) !== 0 || !disk.caps.trim ? writeZeroes(disk, job.offset, job.length) : disk.trim(job.offset, job.length))
            .then(fua ? job.flushThenDone : job.done, job.failed);
          break;
        case P.CMD_BLOCK_STATUS:
          blockStatus(disk, job.offset, job.length, (job.flags & P.CMD_FLAG_REQ_ONE) !== 0, job.hi, job.lo)
            .then(job.setChunks, job.failed);
          break;
        case P.CMD_CACHE:
          cacheRange(disk, this.opts.pool, job.offset, job.length).then(job.done, job.failed);
          break;
      }
    } catch (err) {
      // A disk that throws instead of rejecting still fails only this request.
      queueMicrotask(() => job.failed(err));
    }
  }

  /** A job finished (err undefined on success): reply, release, and maybe read more. */
  complete(job: Job, err: unknown): void {
    this.inFlight--;
    this.inFlightBytes -= job.cost;
    if (this.state !== 'closed' && !this.socket.destroyed) {
      if (err !== undefined) {
        if (job.type !== P.CMD_READ) this.opts.log.debug({ err: errorMessage(err) }, 'nbd request failed');
        else this.opts.log.warn({ offset: job.offset, length: job.length, err: errorMessage(err) }, 'nbd read failed');
        this.replyError(job.hi, job.lo, P.nbdErrno(err), errorMessage(err));
        this.release(job.buf);
      } else {
        this.replySuccess(job);
      }
    } else {
      this.release(job.buf);
    }
    this.recycle(job);
    if (this.state === 'open') {
      if (this.paused && !this.overBudget()) this.resume();
    } else {
      this.maybeEnd();
      this.maybeFinish();
    }
  }

  private replySuccess(job: Job): void {
    const buf = job.buf;
    if (job.chunks !== null) {
      const last = job.chunks.length - 1;
      for (let i = 0; i <= last; i++) this.send(job.chunks[i]!, i === last ? buf : null);
      return;
    }
    if (job.type === P.CMD_READ) {
      // The header goes separately so the data buffer stays in its power-of-two size class;
      // both leave in one writev because the socket is corked.
      this.send(readReplyHeader(this.session.structured, job.hi, job.lo, job.offset, job.length), null);
      this.send(job.data!, buf);
      return;
    }
    this.release(buf);
    const reply = Buffer.allocUnsafe(P.SIMPLE_REPLY_SIZE);
    writeSimpleReply(reply, 0, job.hi, job.lo);
    this.send(reply, null);
  }

  private replyError(hi: number, lo: number, errno: number, message: string): void {
    this.send(errorReply(this.session.structured, hi, lo, errno, message), null);
  }

  /** Queues bytes on the socket; replies finishing in the same tick leave in one writev. */
  private send(bytes: Buffer, pooled: Buffer | null): void {
    if (this.socket.destroyed || this.socket.writableEnded) {
      this.release(pooled);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.written.push(pooled);
    this.socket.write(bytes, this.onWritten);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  private readonly onWritten = (): void => {
    const buf = this.written.shift();
    if (buf) this.opts.pool.release(buf);
  };

  private readonly onDrain = (): void => {
    if (this.paused && this.state === 'open' && !this.overBudget()) this.resume();
  };

  private overBudget(): boolean {
    return this.inFlight >= MAX_IN_FLIGHT_REQUESTS
      || this.inFlightBytes + this.socket.writableLength > this.opts.maxInFlightBytes;
  }

  private pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
      this.opts.onBackpressure?.();
    }
  }

  private resume(): void {
    if (this.state !== 'open') return;
    this.paused = false;
    this.socket.resume();
    this.parse();
  }

  private stopReading(): void {
    this.state = 'draining';
    this.queue.clear();
    this.discard = 0;
    // Keep reading (and dropping) so a client blocked on writing can see our close.
    this.paused = false;
    this.socket.resume();
    this.dropAwaitingPayload();
  }

  private protocolError(why: string): void {
    this.opts.log.warn({ why }, 'nbd client broke the protocol; closing its connection');
    this.stopReading();
    this.maybeEnd();
  }

  /** Once draining and idle, close our side after the queued replies are written. */
  private maybeEnd(): void {
    if (this.state !== 'draining' || this.inFlight > 0 || this.ending) return;
    this.ending = true;
    this.socket.end();
    // A peer that never closes its side must not hold the connection open.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  private maybeFinish(): void {
    if (this.state !== 'closed' || this.inFlight > 0 || this.finished) return;
    this.finished = true;
    this.socket.off('drain', this.onDrain);
    this.onFinished();
  }

  private release(buf: Buffer | null): void {
    if (buf) this.opts.pool.release(buf);
  }

  private recycle(job: Job): void {
    job.buf = null;
    job.data = null;
    job.chunks = null;
    if (this.freeJobs.length < JOB_POOL) this.freeJobs.push(job);
  }
}
