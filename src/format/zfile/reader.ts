/**
 * Random-access reads of a ZFile (formats.md §3): open locates the index through the rewritten
 * header or the trailer, loads the jump table compactly, and each read fetches the compressed
 * bytes of a run of blocks in one source read per window, checks each block's CRC, and
 * decompresses. A CRC or decompression failure is retried, then fails the read: never wrong bytes.
 */
import { FormatError } from '../../errors.ts';
import { readFully, type ByteSource } from '../../io/types.ts';
import { BLOCK_CRC_INIT, crc32c } from '../crc32c.ts';
import { BlockDecompressor, maxStoredBlock } from './codec.ts';
import {
  algoName, FLAG_CALC_DIGEST, FLAG_HEADER, FLAG_HEADER_OVERWRITE, FLAG_SEALED, FLAG_TYPE_DATA, hasMagic, hex,
  HT_SIZE, MAX_BLOCK_SIZE, MAX_INDEX_SIZE, parseHeaderTrailer, type HeaderTrailer, type ZFileAlgo,
} from './header.ts';
import { JumpTable } from './jump-table.ts';

/** Bytes of compressed data fetched per source read when a request spans many blocks. */
const READ_WINDOW = 1 << 20;
const READ_RETRIES = 3;
const TABLE_CHUNK = 1 << 20;
// Scratch sets kept for reuse: enough for an NBD client's whole queue (fio and the kernel keep 32+
// reads in flight). With 8, three of four reads at QD32 built a new window and zstd context, which
// cost a fifth of the server's CPU in allocation and GC (zstd 4K QD32: 17.6k -> 27.5k IOPS at 64).
const POOL_LIMIT = 64;

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

/** Per-read scratch: the compressed window (with 4 bytes of room in front) and one block. */
interface Scratch {
  window: Uint8Array;
  block: Uint8Array;
  decompressor: BlockDecompressor;
}

export class ZFileReader implements ByteSource {
  readonly size: number;
  readonly name: string;
  private readonly pool: Scratch[] = [];
  private readonly checkCrc: boolean;

  private constructor(
    private readonly src: ByteSource,
    private readonly table: JumpTable,
    private readonly details: ZFileInfo,
    verify: boolean,
  ) {
    this.size = details.originalSize;
    this.name = src.name ?? 'zfile';
    this.checkCrc = verify && details.verify;
  }

  get info(): ZFileInfo {
    return { ...this.details };
  }

  /**
   * Opens a ZFile. With `verify` false (default true) per-block CRCs are not checked; header
   * digests and the index CRC are always checked when the file carries them.
   */
  static async open(src: ByteSource, opts: { verify?: boolean } = {}): Promise<ZFileReader> {
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
    }, opts.verify ?? true);
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

  async close(): Promise<void> {
    await this.src.close();
  }

  /** Reads, checks and decompresses blocks [first, end) and copies the wanted bytes into dst. */
  private async readRun(first: number, end: number, start: number, s: Scratch,
    dst: Uint8Array, offset: number, len: number): Promise<void> {
    const span = this.table.start(end) - start;
    if (s.window.length < span + 4) s.window = new Uint8Array(span + 4);
    const bs = this.details.blockSize;
    let attempt = 0;
    for (;;) {
      const compressed = s.window.subarray(4, 4 + span);
      await readFully(this.src, compressed, start);
      try {
        for (let b = first; b < end; b++) {
          const bStart = this.table.start(b) - start + 4;
          const bEnd = this.table.start(b + 1) - start + 4;
          const blockOff = b * bs;
          const blockLen = Math.min(bs, this.size - blockOff);
          // Decompress straight into dst when the whole block is wanted; else via the scratch block.
          const from = Math.max(offset, blockOff);
          const to = Math.min(offset + len, blockOff + blockLen);
          const whole = from === blockOff && to === blockOff + blockLen;
          const out = whole ? dst.subarray(from - offset, to - offset) : s.block.subarray(0, blockLen);
          this.decodeBlock(s, b, bStart, bEnd, out, start - 4);
          if (!whole) dst.set(s.block.subarray(from - blockOff, to - blockOff), from - offset);
        }
        return;
      } catch (err) {
        if (!(err instanceof FormatError) || ++attempt > READ_RETRIES) throw err;
      }
    }
  }

  private decodeBlock(s: Scratch, b: number, bStart: number, bEnd: number, out: Uint8Array, base: number): void {
    let dataEnd = bEnd;
    if (this.details.verify) {
      dataEnd -= 4;
      if (this.checkCrc) {
        const w = s.window;
        const stored = (w[dataEnd]! | (w[dataEnd + 1]! << 8) | (w[dataEnd + 2]! << 16) | (w[dataEnd + 3]! << 24)) >>> 0;
        const crc = crc32c(w.subarray(bStart, dataEnd), BLOCK_CRC_INIT);
        if (crc !== stored) {
          throw new FormatError(this.name, base + bStart,
            `block ${b}: CRC mismatch (stored 0x${hex(stored)}, computed 0x${hex(crc)})`);
        }
      }
    }
    let n: number;
    try {
      n = s.decompressor.decompress(s.window, bStart, dataEnd, out);
    } catch (err) {
      throw new FormatError(this.name, base + bStart,
        `block ${b}: ${this.details.algo} decompression failed: ${(err as Error).message}`);
    }
    if (n !== out.length) {
      throw new FormatError(this.name, base + bStart,
        `block ${b}: decompressed to ${n} bytes, expected ${out.length}`);
    }
  }

  private acquire(): Scratch {
    return this.pool.pop() ?? {
      window: new Uint8Array(4 + 2 * maxStoredBlock(this.details.blockSize)),
      block: new Uint8Array(this.details.blockSize),
      decompressor: new BlockDecompressor(this.details.algo),
    };
  }

  private release(s: Scratch): void {
    if (this.pool.length < POOL_LIMIT) this.pool.push(s);
  }
}
