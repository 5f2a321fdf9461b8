/**
 * The append-only writable layer (formats.md §2.7): a data file that only grows (header 0x03) and
 * an index log (header 0x01, records from byte 4096), one record appended per piece after its
 * data is written. Concurrent writes reserve their span of the data EOF and their index slots
 * synchronously, so the in-memory map and the on-disk log apply records in the same order while
 * the data writes themselves run in parallel and reads never wait.
 */
import { randomUUID } from 'node:crypto';
import { read as fsRead, write as fsWrite } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { DiskError, FormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/types.ts';
import { ExtentMap } from './extent-map.ts';
import { decodeHeader, encodeHeader, FLAG_HEADER, FLAG_TYPE_DATA, headerFields, HT_SPACE, normalizeUuid } from './header.ts';
import { replayIndexLog } from './log-replay.ts';
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

/*
 * Positional I/O through the callback API on the raw fd: on the hot paths (every write, every
 * extent copied by commit) it costs about half of what FileHandle's promise methods do.
 */
function preadOnce(fd: number, dst: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, dst, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function pwriteOnce(fd: number, src: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWrite(fd, src, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

async function writeAll(fh: FileHandle, data: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) done += await pwriteOnce(fh.fd, data, done, data.length - done, pos + done);
}

/** A growing file as a ByteSource: its size is what has been reserved so far. */
class GrowingFileSource implements ByteSource {
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

export class LsmtWritableLayer implements WritableLayer {
  readonly data: ByteSource;
  private readonly pending = new Set<Promise<void>>();
  private closed = false;
  /** Index records waiting for the append in flight; written together next (group append). */
  private queued: Uint8Array[] = [];
  private queuedWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private appending = false;
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

  private track(p: Promise<void>): Promise<void> {
    this.pending.add(p);
    const done = (): void => { this.pending.delete(p); };
    p.then(done, done);
    return p;
  }

  write(src: Uint8Array, byteOffset: number): Promise<void> {
    try {
      this.check(byteOffset, src.length, 'write');
    } catch (e) {
      return Promise.reject(e);
    }
    if (src.length === 0) return Promise.resolve();
    // Reserve the data span now; the pieces are contiguous in the file, so one pwrite covers them.
    const at = this.dataEof;
    this.dataEof += src.length;
    return this.track((async () => {
      try {
        await writeAll(this.dataFh, src, at);
      } catch (e) {
        throw new DiskError('EIO', `${this.name}: data write failed: ${(e as Error).message}`, { cause: e });
      }
      await this.appendRecords(byteOffset / SECTOR, src.length / SECTOR, at / SECTOR, 0, MAX_WRITE_SECTORS);
    })());
  }

  trim(byteOffset: number, length: number): Promise<void> {
    try {
      this.check(byteOffset, length, 'trim');
    } catch (e) {
      return Promise.reject(e);
    }
    if (length === 0) return Promise.resolve();
    return this.track(this.appendRecords(byteOffset / SECTOR, length / SECTOR, this.dataEof / SECTOR, 1, MAX_EXTENT_SECTORS));
  }

  /** Reserves the index slots and updates the map synchronously (same order as the log), then writes. */
  private async appendRecords(sector: number, count: number, moffset: number, zeroed: number, maxPiece: number): Promise<void> {
    const pieces = Math.ceil(count / maxPiece);
    const buf = new Uint8Array(pieces * RECORD_SIZE);
    const dv = new DataView(buf.buffer);
    for (let p = 0; p < pieces; p++) {
      const skip = p * maxPiece;
      const n = Math.min(maxPiece, count - skip);
      const m = zeroed ? moffset : moffset + skip;
      encodeRecord(dv, p * RECORD_SIZE, sector + skip, n, m, zeroed, this.tag);
      this.map.insert(sector + skip, n, m, zeroed);
    }
    await new Promise<void>((resolve, reject) => {
      this.queued.push(buf);
      this.queuedWaiters.push({ resolve, reject });
      if (!this.appending) void this.drainIndexQueue();
    });
  }

  /**
   * Appends queued records in queue order (= map order), one write per batch: records of writes
   * that complete while an append is in flight go out together, so the log never has holes.
   */
  private async drainIndexQueue(): Promise<void> {
    this.appending = true;
    while (this.queued.length > 0) {
      const bufs = this.queued;
      const waiters = this.queuedWaiters;
      this.queued = [];
      this.queuedWaiters = [];
      const all = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
      const at = this.indexEof;
      this.indexEof += all.length;
      try {
        if (this.failed) throw this.failed;
        await writeAll(this.indexFh, all, at);
        for (const w of waiters) w.resolve();
      } catch (e) {
        // The map already holds these records; refuse further writes rather than diverge from the log.
        this.failed ??= e as Error;
        const err = new DiskError('EIO', `${this.name}: index append failed: ${(e as Error).message}`, { cause: e });
        for (const w of waiters) w.reject(err);
      }
    }
    this.appending = false;
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    await this.dataFh.datasync();
    await this.indexFh.datasync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.dataFh.close();
    await this.indexFh.close();
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
