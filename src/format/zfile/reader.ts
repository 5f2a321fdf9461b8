/**
 * Random-access reads of a ZFile (formats.md §3): open locates the index through the rewritten
 * header or the trailer, loads the jump table compactly, and each read fetches the compressed
 * bytes of a run of blocks in one source read per window, checks each block's CRC, and
 * decompresses. A CRC or decompression failure is retried, then fails the read: never wrong bytes.
 * Large reads are decompressed on decode threads, in parts, from and into shared memory: one core
 * decompresses 4 KiB zstd blocks at well under the speed NBD can send them.
 */
import { FormatError } from '../../errors.ts';
import { availableParallelism } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { PLAIN_SOURCE, readFully, type ByteSource, type PrefetchKind, type SourceCaps } from '../../io/types.ts';
import { crc32c } from '../crc32c.ts';
import { decodeInto } from './block-decode.ts';
import type { DecodeFailure, DecodeRequest } from './block-decode-thread.ts';
import { BlockDecompressor, maxStoredBlock } from './codec.ts';
import {
  algoName, FLAG_CALC_DIGEST, FLAG_HEADER, FLAG_HEADER_OVERWRITE, FLAG_SEALED, FLAG_TYPE_DATA, hasMagic, hex,
  HT_SIZE, MAX_BLOCK_SIZE, MAX_INDEX_SIZE, parseHeaderTrailer, type HeaderTrailer, type ZFileAlgo,
} from './header.ts';
import { JumpTable } from './jump-table.ts';
import { WorkerPool } from './worker-pool.ts';

/** Bytes of compressed data fetched per source read when a request spans many blocks. */
const READ_WINDOW = 1 << 20;
const READ_RETRIES = 3;
const TABLE_CHUNK = 1 << 20;
// Scratch sets kept for reuse: enough for an NBD client's whole queue (fio and the kernel keep 32+
// reads in flight). With 8, three of four reads at QD32 built a new window and zstd context, which
// cost a fifth of the server's CPU in allocation and GC (zstd 4K QD32: 17.6k -> 27.5k IOPS at 64).
const POOL_LIMIT = 64;
/**
 * Decompressed bytes per decode-thread part: below this the message round trip (tens of µs) costs
 * more than the decompression it moves off the main thread (a 4 KiB zstd block takes ~5 µs).
 */
const THREAD_MIN_BYTES = 128 * 1024;

let threadPool: WorkerPool<DecodeRequest, DecodeFailure> | undefined;

/** The process's decode threads, sized by the first reader that uses them; started on first use, idle ones never keep the process alive. */
function decodeThreads(size: number): WorkerPool<DecodeRequest, DecodeFailure> {
  threadPool ??= new WorkerPool('block-decode-thread', size);
  return threadPool;
}

/** Zeroed bytes in shared memory, so a decode thread can read or fill them in place. */
function sharedBytes(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(n));
}

export interface ZFileReaderOptions {
  /** Check per-block CRCs (default true). Header digests and the index CRC are always checked. */
  verify?: boolean;
  /**
   * Decode threads for large reads: 0 decodes every block on the calling thread. Default: one per
   * CPU on the main thread, none inside a worker (the bulk decompressors already fill every core).
   */
  threads?: number;
  /** Smallest run of wanted whole blocks (in decompressed bytes) sent to a decode thread. */
  threadMinBytes?: number;
}

/** One part of a read being decoded on a thread: its first block and its outcome. */
interface ThreadPart {
  first: number;
  done: Promise<DecodeFailure>;
}

/** True when `head` (at least the first 24 bytes) starts with the ZFile magics. */
export function isZFile(head: Uint8Array): boolean {
  return hasMagic(head);
}

export interface ZFileInfo {
  algo: ZFileAlgo;
  blockSize: number;
  /** Whether every stored block carries a CRC (the header's `verify` byte). */
  verify: boolean;
  blockCount: number;
  /** Low 32 bits of the flags of the header at offset 0 (0x13 streamed, 0x1B rewritten). */
  headerFlags: number;
  /** Flags of the trailer, or undefined when the rewritten header was trusted instead. */
  trailerFlags: number | undefined;
  /** Whether the index fields came from the rewritten header (HEADER_OVERWRITE). */
  headerOverwritten: boolean;
  /** Whether digests and the index CRC were present (CALC_DIGEST) and checked. */
  digestChecked: boolean;
  originalSize: number;
  /** Size of the ZFile itself (compressed). */
  compressedSize: number;
  indexOffset: number;
  dataOffset: number;
}

/**
 * Per-read scratch: the compressed window, one block, and the
 * decode threads' output when the caller's buffer is not shared memory (both shared).
 */
interface Scratch {
  window: Uint8Array;
  block: Uint8Array;
  out: Uint8Array;
  decompressor: BlockDecompressor;
}

const PREFETCH_CAPS: SourceCaps = Object.freeze({ readSync: false, prefetch: true, progressive: false });

export class ZFileReader implements ByteSource {
  /** Prefetch passes through (mapped to the compressed blocks) when the source below can prefetch. */
  readonly caps: SourceCaps;
  readonly size: number;
  readonly name: string;
  private readonly pool: Scratch[] = [];
  private readonly checkCrc: boolean;
  private readonly threads: number;
  private readonly threadMinBytes: number;
  /** Blocks decoded on the decode threads so far (for tests and diagnostics). */
  threadedBlocks = 0;

  private constructor(
    private readonly src: ByteSource,
    private readonly table: JumpTable,
    private readonly details: ZFileInfo,
    opts: ZFileReaderOptions,
  ) {
    this.size = details.originalSize;
    this.name = src.name ?? 'zfile';
    this.caps = src.caps.prefetch ? PREFETCH_CAPS : PLAIN_SOURCE;
    this.checkCrc = (opts.verify ?? true) && details.verify;
    this.threads = Math.max(0, Math.floor(opts.threads ?? (isMainThread ? availableParallelism() : 0)));
    this.threadMinBytes = Math.max(details.blockSize, opts.threadMinBytes ?? THREAD_MIN_BYTES);
  }

  get info(): ZFileInfo {
    return { ...this.details };
  }

  /** Opens a ZFile (see ZFileReaderOptions). */
  static async open(src: ByteSource, opts: ZFileReaderOptions = {}): Promise<ZFileReader> {
    const file = src.name ?? 'zfile';
    if (src.size < 2 * HT_SIZE) {
      throw new FormatError(file, 0, `truncated ZFile: ${src.size} bytes, smaller than header + trailer`);
    }
    const headBytes = new Uint8Array(HT_SIZE);
    await readFully(src, headBytes, 0);
    const header = parseHeaderTrailer(headBytes, file, 0, 'header');
    if (!(header.flags & FLAG_HEADER)) throw new FormatError(file, 32, 'header: HEADER flag (bit 0) is not set');

    const trailerOffset = src.size - HT_SIZE;
    let trusted: HeaderTrailer;
    let trailerFlags: number | undefined;
    const overwritten = (header.flags & FLAG_HEADER_OVERWRITE) !== 0;
    if (overwritten) {
      trusted = header;
    } else {
      const tBytes = new Uint8Array(HT_SIZE);
      await readFully(src, tBytes, trailerOffset);
      const t = parseHeaderTrailer(tBytes, file, trailerOffset, 'trailer');
      const want = FLAG_TYPE_DATA | FLAG_SEALED;
      if ((t.flags & FLAG_HEADER) || (t.flags & want) !== want) {
        throw new FormatError(file, trailerOffset + 32,
          `trailer: flags 0x${hex(t.flags)} are not those of a sealed data trailer (bits 1 and 2 set, bit 0 clear)`);
      }
      trusted = t;
      trailerFlags = t.flags;
    }
    const where = overwritten ? 0 : trailerOffset;
    const what = overwritten ? 'header' : 'trailer';
    const algo = algoName(trusted.algo);
    if (!algo) throw new FormatError(file, where + 76, `${what}: unsupported compression algorithm ${trusted.algo} (1 = lz4, 2 = zstd)`);
    const bs = trusted.blockSize;
    if (bs < 512 || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
      throw new FormatError(file, where + 72, `${what}: block size ${bs} is not a power of two from 512 to ${MAX_BLOCK_SIZE}`);
    }
    const n = trusted.indexSize;
    if (n > MAX_INDEX_SIZE) throw new FormatError(file, where + 48, `${what}: index_size ${n} exceeds ${MAX_INDEX_SIZE}`);
    if (n !== Math.ceil(trusted.originalSize / bs)) {
      throw new FormatError(file, where + 48,
        `${what}: index_size ${n} does not match original size ${trusted.originalSize} at block size ${bs}`);
    }
    const dataOffset = HT_SIZE + trusted.dictSize;
    if (trusted.indexOffset < dataOffset || trusted.indexOffset + 4 * n > trailerOffset) {
      throw new FormatError(file, where + 40,
        `${what}: jump table [${trusted.indexOffset}, +${4 * n}) does not fit between the data start ${dataOffset} and the trailer at ${trailerOffset}`);
    }

    const raw = new Uint8Array(4 * n);
    for (let off = 0; off < raw.length; off += TABLE_CHUNK) {
      await readFully(src, raw.subarray(off, Math.min(raw.length, off + TABLE_CHUNK)), trusted.indexOffset + off);
    }
    const digestChecked = (trusted.flags & FLAG_CALC_DIGEST) !== 0;
    if (digestChecked) {
      const crc = crc32c(raw, 0);
      if (crc !== trusted.indexCrc) {
        throw new FormatError(file, trusted.indexOffset,
          `jump table CRC mismatch (stored 0x${hex(trusted.indexCrc)} in the ${what}, computed 0x${hex(crc)})`);
      }
    }
    const table = JumpTable.build(raw, n, {
      blockSize: bs, verify: trusted.verify, dataStart: dataOffset, dataEnd: trusted.indexOffset,
      maxStored: maxStoredBlock(bs), file, tableOffset: trusted.indexOffset,
    });
    return new ZFileReader(src, table, {
      algo, blockSize: bs, verify: trusted.verify, blockCount: n, headerFlags: header.flags, trailerFlags,
      headerOverwritten: overwritten, digestChecked, originalSize: trusted.originalSize,
      compressedSize: src.size, indexOffset: trusted.indexOffset, dataOffset,
    }, opts);
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`${this.name}: bad read offset ${offset}`);
    if (offset >= this.size || dst.length === 0) return 0;
    const len = Math.min(dst.length, this.size - offset);
    const bs = this.details.blockSize;
    const last = Math.floor((offset + len - 1) / bs);
    const scratch = this.acquire();
    try {
      let block = Math.floor(offset / bs);
      while (block <= last) {
        // One source read covers as many whole blocks as fit in the window (at least one).
        const start = this.table.start(block);
        let end = block + 1;
        while (end <= last && this.table.start(end + 1) - start <= READ_WINDOW) end++;
        await this.readRun(block, end, start, scratch, dst, offset, len);
        block = end;
      }
    } finally {
      this.release(scratch);
    }
    return len;
  }

  /**
   * The `prefetch` capability (when the source below has it): the compressed bytes of the blocks
   * holding [offset, offset+length), so a later read of that range decodes without fetching.
   */
  prefetch(offset: number, length: number, kind: PrefetchKind): Promise<void> {
    if (!this.src.prefetch || length <= 0 || offset >= this.size) return Promise.resolve();
    const bs = this.details.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((Math.min(this.size, offset + length) - 1) / bs);
    const start = this.table.start(first);
    return this.src.prefetch(start, this.table.start(last + 1) - start, kind);
  }

  async close(): Promise<void> {
    await this.src.close();
  }

  /** Reads, checks and decompresses blocks [first, end) and copies the wanted bytes into dst. */
  private async readRun(first: number, end: number, start: number, s: Scratch,
    dst: Uint8Array, offset: number, len: number): Promise<void> {
    const span = this.table.start(end) - start;
    if (s.window.length < span) s.window = sharedBytes(span);
    let attempt = 0;
    for (;;) {
      await readFully(this.src, s.window.subarray(0, span), start);
      try {
        await this.decodeRun(first, end, start, s, dst, offset, len);
        return;
      } catch (err) {
        if (!(err instanceof FormatError) || ++attempt > READ_RETRIES) throw err;
      }
    }
  }

  /**
   * Decodes blocks [first, end), whose stored bytes sit in the scratch window (file offset `base`
   * at window index 0). Blocks wholly wanted are decompressed straight into dst; when enough of
   * them are wanted they go to the decode threads in parts, the edge blocks staying here.
   */
  private async decodeRun(first: number, end: number, base: number, s: Scratch,
    dst: Uint8Array, offset: number, len: number): Promise<void> {
    const bs = this.details.blockSize;
    // Blocks [wholeFirst, wholeEnd) are full-size and wanted entirely.
    const wholeFirst = Math.max(first, Math.ceil(offset / bs));
    const wholeEnd = Math.min(end, Math.floor((offset + len) / bs));
    // Only zstd: liblz4 decodes 4 KiB blocks at GB/s on one core, less than a thread hand-off costs.
    const threaded = this.threads > 0 && this.details.algo === 'zstd' && (wholeEnd - wholeFirst) * bs >= this.threadMinBytes;
    const parts = threaded ? this.startThreadedDecode(wholeFirst, wholeEnd, base, s, dst, offset) : undefined;
    let failure: FormatError | undefined;
    for (let b = first; b < end; b++) {
      if (parts && b === wholeFirst) b = wholeEnd;
      if (b >= end) break;
      const problem = this.decodeHere(b, base, s, dst, offset, len);
      if (problem) { failure = problem; break; }
    }
    if (parts) {
      // Every part must have finished before the window or dst is reused, even after a failure.
      const settled = await Promise.allSettled(parts.map((p) => p.done));
      for (let i = 0; i < parts.length && !failure; i++) {
        const r = settled[i]!;
        if (r.status === 'rejected') throw r.reason;
        const f = r.value;
        if (f) failure = this.blockError(parts[i]!.first + f.block, this.table.start(parts[i]!.first + f.block), f.problem);
      }
      if (!failure && !(dst.buffer instanceof SharedArrayBuffer)) {
        const from = wholeFirst * bs - offset;
        dst.set(s.out.subarray(0, (wholeEnd - wholeFirst) * bs), from);
      }
    }
    if (failure) throw failure;
  }

  /** Decodes block b here; the wanted part of it lands in dst. Returns the failure, if any. */
  private decodeHere(b: number, base: number, s: Scratch, dst: Uint8Array, offset: number, len: number): FormatError | undefined {
    const bs = this.details.blockSize;
    const blockOff = b * bs;
    const blockLen = Math.min(bs, this.size - blockOff);
    const from = Math.max(offset, blockOff);
    const to = Math.min(offset + len, blockOff + blockLen);
    const whole = from === blockOff && to === blockOff + blockLen;
    const out = whole ? dst.subarray(from - offset, to - offset) : s.block.subarray(0, blockLen);
    const bStart = this.table.start(b) - base;
    const problem = decodeInto(s.decompressor, this.details.verify, this.checkCrc, s.window, bStart, this.table.start(b + 1) - base, out);
    if (problem !== undefined) return this.blockError(b, base + bStart, problem);
    if (!whole) dst.set(s.block.subarray(from - blockOff, to - blockOff), from - offset);
    return undefined;
  }

  private blockError(b: number, at: number, problem: string): FormatError {
    return new FormatError(this.name, at, `block ${b}: ${problem}`);
  }

  /** Posts whole blocks [first, end) to the decode threads in about equal parts. */
  private startThreadedDecode(first: number, end: number, base: number, s: Scratch, dst: Uint8Array, offset: number): ThreadPart[] {
    const bs = this.details.blockSize;
    const count = end - first;
    const shared = dst.buffer instanceof SharedArrayBuffer;
    if (!shared && s.out.length < count * bs) s.out = sharedBytes(count * bs);
    const out = shared ? dst.buffer as SharedArrayBuffer : s.out.buffer as SharedArrayBuffer;
    const outBase = shared ? dst.byteOffset + (first * bs - offset) : 0;
    const pool = decodeThreads(this.threads);
    const n = Math.max(1, Math.min(this.threads, Math.floor(count * bs / this.threadMinBytes)));
    const parts: ThreadPart[] = [];
    this.threadedBlocks += count;
    for (let i = 0; i < n; i++) {
      const a = first + Math.floor((count * i) / n);
      const z = first + Math.floor((count * (i + 1)) / n);
      const starts = new Int32Array(z - a + 1);
      for (let b = a; b <= z; b++) starts[b - a] = this.table.start(b) - base;
      const req: DecodeRequest = {
        algo: this.details.algo, stored: this.details.verify, check: this.checkCrc,
        window: s.window.buffer as SharedArrayBuffer, starts, out, outOffset: outBase + (a - first) * bs, blockSize: bs,
      };
      // A thread that cannot even be started fails this read only after the parts already
      // posted have finished with the window (decodeRun waits for every part).
      let done: Promise<DecodeFailure>;
      try {
        done = pool.run(req, []);
      } catch (err) {
        parts.push({ first: a, done: Promise.reject(err) });
        break;
      }
      parts.push({ first: a, done });
    }
    return parts;
  }

  private acquire(): Scratch {
    return this.pool.pop() ?? {
      window: sharedBytes(2 * maxStoredBlock(this.details.blockSize)),
      block: new Uint8Array(this.details.blockSize),
      out: sharedBytes(0),
      decompressor: new BlockDecompressor(this.details.algo),
    };
  }

  private release(s: Scratch): void {
    if (this.pool.length < POOL_LIMIT) this.pool.push(s);
  }
}
