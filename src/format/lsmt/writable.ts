/**
 * The append-only writable layer (formats.md §2.7): a data file that only grows (header 0x03) and
 * an index log (header 0x01, records from byte 4096), one record appended per piece after its
 * data is written. Concurrent writes reserve their span of the data EOF synchronously and are
 * group-committed in issue order (see LsmtWritableLayer), so the in-memory map and the on-disk
 * log apply records in the same order and reads never wait.
 */
import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { DiskError, FormatError } from '../../errors.ts';
import { PLAIN_SOURCE, type ByteSource } from '../../io/types.ts';
import { ExtentMap } from './extent-map.ts';
import { decodeHeader, encodeHeader, FLAG_HEADER, FLAG_TYPE_DATA, headerFields, HT_SPACE, normalizeUuid } from './header.ts';
import { replayIndexLog } from './log-replay.ts';
import { preadOnce, writeAll, writevAll } from '../../io/positional.ts';
import { encodeInvalidRecord, encodeRecord, RECORD_SIZE } from './records.ts';
import { MAX_EXTENT_SECTORS, SECTOR, type ExtentVisitor, type LsmtHeaderFields, type SegmentIndex, type WritableLayer } from './types.ts';

/** Writes are split into pieces of at most 4 MiB, as upstream does. */
export const MAX_WRITE_SECTORS = (4 << 20) / SECTOR;

export interface CreateWritableOptions {
  /** Bytes; 0 means "take the size of the layers below". */
  virtualSize: number;
  uuid?: string;
  parentUuid?: string;
  /** Only the append-only kind is written; sparse layers are read-only here. */
  sparse?: false;
  /** Record tag: the number of read-only layers this layer is stacked on (§2.5). */
  tag?: number;
}

/** A growing file as a ByteSource: its size is what has been reserved so far. */
class GrowingFileSource implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  constructor(private readonly fh: FileHandle, private readonly sizeOf: () => number, readonly name: string) {}
  get size(): number {
    return this.sizeOf();
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    const want = Math.max(0, Math.min(dst.length, this.size - offset));
    let done = 0;
    while (done < want) {
      const n = await preadOnce(this.fh.fd, dst, done, want - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }
  async close(): Promise<void> {}
}

/** One write or trim waiting for its batch; `src` is null for a trim. */
interface QueuedOp {
  src: Uint8Array | null;
  sector: number;
  count: number;
  /** Data file byte offset reserved for a write; for a trim, the data EOF when it was issued. */
  at: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** A batch whose data is in the file and whose records are in the map, waiting for its index append. */
interface IndexBatch {
  records: Uint8Array;
  ops: QueuedOp[];
  /** Set when the batch's data write failed: its ops are rejected, in turn, with no records. */
  error?: Error;
}

const EMPTY = new Uint8Array(0);

/** Ops per data write: bounded so one writev stays under IOV_MAX and a batch's latency stays small. */
const MAX_BATCH_OPS = 256;

export class LsmtWritableLayer implements WritableLayer {
  readonly data: ByteSource;
  private closed = false;
  /*
   * Group commit in two pipelined stages, both strictly in issue order: writes and trims queue up
   * while a data write is in flight and then go out together as one positional writev (their data
   * spans were reserved back to back); the batch then enters the map and hands its records to the
   * index stage, which appends every batch waiting for it in one write. The map and the log thus
   * apply records in issue order (a later write to the same sectors wins in both), a write is
   * acknowledged only once its record is in the log, and a read after that sees it.
   */
  private queued: QueuedOp[] = [];
  private writingData = false;
  private indexQueue: IndexBatch[] = [];
  private appending = false;
  /** Ops issued / ops settled (acknowledged or rejected) so far; flush waits for the issued count. */
  private issued = 0;
  private settled = 0;
  private flushWaiters: { target: number; resolve: () => void }[] = [];
  private failed: Error | undefined;

  constructor(
    readonly name: string,
    readonly header: LsmtHeaderFields,
    private readonly dataFh: FileHandle,
    private readonly indexFh: FileHandle,
    private readonly map: ExtentMap,
    private dataEof: number,
    private indexEof: number,
    private readonly tag: number,
  ) {
    this.data = new GrowingFileSource(dataFh, () => this.dataEof, name);
  }

  get virtualSize(): number {
    return this.header.virtualSize;
  }

  get uuid(): string {
    return this.header.uuid;
  }

  get parentUuid(): string {
    return this.header.parentUuid;
  }

  /** Bytes of the data file, header included (reserved appends count). */
  get dataSize(): number {
    return this.dataEof;
  }

  get segmentCount(): number {
    return this.map.count;
  }

  lookup(sector: number, count: number, visit: ExtentVisitor): void {
    this.map.lookup(sector, count, visit);
  }

  /** A sorted snapshot of the live extents (the level-0 map), tags 0. */
  snapshot(): SegmentIndex {
    return this.map.toIndex();
  }

  private check(byteOffset: number, length: number, what: string): void {
    if (this.closed) throw new DiskError('EIO', `${this.name}: ${what} after close`);
    if (this.failed) throw new DiskError('EIO', `${this.name}: ${what} refused: the index log failed earlier (${this.failed.message})`);
    if (byteOffset % SECTOR !== 0 || length % SECTOR !== 0 || byteOffset < 0) {
      throw new DiskError('EINVAL', `${this.name}: ${what} at ${byteOffset}+${length} is not 512-byte aligned`);
    }
    const vsize = this.header.virtualSize;
    if (vsize > 0 && byteOffset + length > vsize) {
      throw new DiskError('ENOSPC', `${this.name}: ${what} at ${byteOffset}+${length} runs past the virtual size ${vsize}`);
    }
  }

  write(src: Uint8Array, byteOffset: number): Promise<void> {
    try {
      this.check(byteOffset, src.length, 'write');
    } catch (e) {
      return Promise.reject(e);
    }
    if (src.length === 0) return Promise.resolve();
    // Reserve the data span now: spans of queued writes are contiguous, so one writev covers them.
    const at = this.dataEof;
    this.dataEof += src.length;
    return this.enqueue(src, byteOffset / SECTOR, src.length / SECTOR, at);
  }

  trim(byteOffset: number, length: number): Promise<void> {
    try {
      this.check(byteOffset, length, 'trim');
    } catch (e) {
      return Promise.reject(e);
    }
    if (length === 0) return Promise.resolve();
    return this.enqueue(null, byteOffset / SECTOR, length / SECTOR, this.dataEof);
  }

  private enqueue(src: Uint8Array | null, sector: number, count: number, at: number): Promise<void> {
    this.issued++;
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ src, sector, count, at, resolve, reject });
      if (!this.writingData) void this.drainDataQueue();
    });
  }

  private async drainDataQueue(): Promise<void> {
    this.writingData = true;
    while (this.queued.length > 0) {
      let ops = this.queued;
      if (ops.length > MAX_BATCH_OPS) {
        this.queued = ops.slice(MAX_BATCH_OPS);
        ops = ops.slice(0, MAX_BATCH_OPS);
      } else {
        this.queued = [];
      }
      const bufs: Uint8Array[] = [];
      let first = -1;
      for (const op of ops) {
        if (op.src === null) continue;
        if (first < 0) first = op.at;
        bufs.push(op.src);
      }
      let error: Error | undefined;
      if (bufs.length > 0) {
        try {
          await writevAll(this.dataFh.fd, bufs, first);
        } catch (e) {
          // A full host disk is ENOSPC to the client (NBD has the code), not a media error.
          const code = (e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'ENOSPC' : 'EIO';
          error = new DiskError(code, `${this.name}: data write failed: ${(e as Error).message}`, { cause: e });
        }
      }
      this.indexQueue.push({ records: error ? EMPTY : this.recordBatch(ops), ops, error });
      if (!this.appending) void this.drainIndexQueue();
    }
    this.writingData = false;
  }

  /** Puts a batch into the map (in issue order, same as the log) and encodes its records. */
  private recordBatch(ops: QueuedOp[]): Uint8Array {
    let n = 0;
    for (const op of ops) n += Math.ceil(op.count / (op.src ? MAX_WRITE_SECTORS : MAX_EXTENT_SECTORS));
    const buf = new Uint8Array(n * RECORD_SIZE);
    const dv = new DataView(buf.buffer);
    let r = 0;
    for (const op of ops) {
      const zeroed = op.src ? 0 : 1;
      const maxPiece = op.src ? MAX_WRITE_SECTORS : MAX_EXTENT_SECTORS;
      const moffset = op.at / SECTOR;
      for (let skip = 0; skip < op.count; skip += maxPiece) {
        const len = Math.min(maxPiece, op.count - skip);
        const m = zeroed ? moffset : moffset + skip;
        encodeRecord(dv, r++ * RECORD_SIZE, op.sector + skip, len, m, zeroed, this.tag);
        this.map.insert(op.sector + skip, len, m, zeroed);
      }
    }
    return buf;
  }

  /** Appends every waiting batch's records in one write, in queue order, so the log never has holes. */
  private async drainIndexQueue(): Promise<void> {
    this.appending = true;
    while (this.indexQueue.length > 0) {
      const batches = this.indexQueue;
      this.indexQueue = [];
      const recs = batches.length === 1 ? batches[0]!.records : Buffer.concat(batches.map((b) => b.records));
      let err: DiskError | undefined;
      try {
        if (this.failed) throw this.failed;
        if (recs.length > 0) {
          const at = this.indexEof;
          this.indexEof += recs.length;
          await writeAll(this.indexFh, recs, at);
        }
      } catch (e) {
        // The map already holds these records; refuse further writes rather than diverge from the log.
        this.failed ??= e as Error;
        err = new DiskError('EIO', `${this.name}: index append failed: ${(e as Error).message}`, { cause: e });
      }
      for (const b of batches) {
        for (const op of b.ops) {
          const e = b.error ?? err;
          if (e) op.reject(e);
          else op.resolve();
        }
        this.settled += b.ops.length;
      }
      this.wakeFlushes();
    }
    this.appending = false;
  }

  private wakeFlushes(): void {
    if (this.flushWaiters.length === 0) return;
    const still: { target: number; resolve: () => void }[] = [];
    for (const w of this.flushWaiters) {
      if (this.settled >= w.target) w.resolve();
      else still.push(w);
    }
    this.flushWaiters = still;
  }

  /** Persists every write issued before the call: data first, so no durable record points at lost data. */
  async flush(): Promise<void> {
    const target = this.issued;
    if (this.settled < target) await new Promise<void>((resolve) => this.flushWaiters.push({ target, resolve }));
    this.throwIfFailed();
    await this.dataFh.datasync();
    await this.indexFh.datasync();
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failed) throw new DiskError('EIO', `${this.name}: flush failed: the index log failed earlier (${this.failed.message})`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.dataFh.close();
      await this.indexFh.close();
    }
  }
}

/** Creates a new, empty writable layer (refuses to overwrite existing files). */
export async function createWritableLayer(dataPath: string, indexPath: string, opts: CreateWritableOptions): Promise<LsmtWritableLayer> {
  if (opts.sparse) throw new DiskError('ENOTSUP', 'sparse writable layers are not supported for writing');
  if (!Number.isSafeInteger(opts.virtualSize) || opts.virtualSize < 0 || opts.virtualSize % SECTOR !== 0) {
    throw new DiskError('EINVAL', `virtual size ${opts.virtualSize} must be a multiple of 512`);
  }
  const fields = {
    virtualSize: opts.virtualSize,
    uuid: normalizeUuid(opts.uuid ?? randomUUID()),
    parentUuid: normalizeUuid(opts.parentUuid),
  };
  const dataHeader = headerFields({ ...fields, flags: FLAG_HEADER | FLAG_TYPE_DATA });
  const dataFh = await open(dataPath, 'wx+');
  let indexFh: FileHandle | undefined;
  try {
    indexFh = await open(indexPath, 'wx+');
    await writeAll(dataFh, encodeHeader(dataHeader), 0);
    await writeAll(indexFh, encodeHeader(headerFields({ ...fields, flags: FLAG_HEADER, indexOffset: HT_SPACE })), 0);
    await dataFh.sync();
    await indexFh.sync();
  } catch (e) {
    // Remove only what this call created, so a failed create leaves nothing half-made behind.
    await dataFh.close();
    await unlink(dataPath).catch(() => {});
    if (indexFh) {
      await indexFh.close();
      await unlink(indexPath).catch(() => {});
    }
    throw e;
  }
  return new LsmtWritableLayer(dataPath, dataHeader, dataFh, indexFh, new ExtentMap(), HT_SPACE, HT_SPACE, checkTag(opts.tag));
}

function checkTag(tag: number | undefined): number {
  const t = tag ?? 0;
  if (!Number.isInteger(t) || t < 0 || t > 255) throw new RangeError(`record tag ${t} must be 0..255`);
  return t;
}

/** Reopens a writable layer, replaying its index log (a torn tail from a crash is dropped). */
export async function openWritableLayer(dataPath: string, indexPath: string, opts: { tag?: number } = {}): Promise<LsmtWritableLayer> {
  const dataFh = await open(dataPath, 'r+');
  let indexFh: FileHandle | undefined;
  try {
    indexFh = await open(indexPath, 'r+');
    const dataSize = (await dataFh.stat()).size;
    const indexSize = (await indexFh.stat()).size;
    const header = await readHeaderOf(dataFh, dataPath, dataSize, true);
    await readHeaderOf(indexFh, indexPath, indexSize, false);
    const ifh = indexFh;
    const indexSrc = new GrowingFileSource(ifh, () => indexSize, indexPath);
    const { map, validIndexBytes, ignoredRecordOffsets } = await replayIndexLog(indexSrc, dataSize, indexPath);
    // Drop a torn partial record so new records stay 16-byte aligned, and neutralise ignored ones.
    if (validIndexBytes < indexSize) await indexFh.truncate(validIndexBytes);
    if (ignoredRecordOffsets.length > 0) {
      const invalid = new Uint8Array(RECORD_SIZE);
      encodeInvalidRecord(new DataView(invalid.buffer), 0);
      for (const at of ignoredRecordOffsets) await writeAll(indexFh, invalid, at);
    }
    if (validIndexBytes < indexSize || ignoredRecordOffsets.length > 0) await indexFh.datasync();
    const dataEof = Math.ceil(dataSize / SECTOR) * SECTOR;
    return new LsmtWritableLayer(dataPath, header, dataFh, indexFh, map, dataEof, validIndexBytes, checkTag(opts.tag));
  } catch (e) {
    await dataFh.close();
    await indexFh?.close();
    throw e;
  }
}

async function readHeaderOf(fh: FileHandle, path: string, size: number, wantData: boolean): Promise<LsmtHeaderFields> {
  if (size < HT_SPACE) throw new FormatError(path, 0, `truncated: ${size} bytes, less than the 4096-byte LSMT header`);
  const b = new Uint8Array(HT_SPACE);
  await fh.read(b, 0, HT_SPACE, 0);
  const h = decodeHeader(b, path, 0);
  if (!(h.flags & FLAG_HEADER)) throw new FormatError(path, 28, `header flags 0x${h.flags.toString(16)} lack the header bit`);
  if (Boolean(h.flags & FLAG_TYPE_DATA) !== wantData) {
    throw new FormatError(path, 28, wantData ? 'expected a writable layer data file, found an index file' : 'expected a writable layer index file, found a data file');
  }
  return h;
}
