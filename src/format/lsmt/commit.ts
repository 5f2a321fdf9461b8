/**
 * Commit (compaction, formats.md §2.10, upstream `compact()`): the live extents of a layer copied
 * in LBA order into a fresh committed layer — header, packed data, merged and padded index,
 * trailer — written to any Sink (a file, a ZFile writer, a tar wrapper around one).
 */
import { FormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/types.ts';
import type { Sink } from '../../io/sink.ts';
import { encodeHeader, FLAG_HEADER, FLAG_SEALED, FLAG_TYPE_DATA, headerFields, HT_SPACE, USER_TAG_MAX } from './header.ts';
import { encodeIndex, SegmentArrays } from './records.ts';
import { MAX_EXTENT_SECTORS, SECTOR, type SegmentIndex } from './types.ts';

/** Committed indexes are padded to a multiple of this many records (4 KiB). */
export const INDEX_ALIGN_RECORDS = 256;
/**
 * Output is staged and written in big chunks (same bytes as upstream's 32 KiB copy loop). The
 * reads of one stage are sorted by source offset and pieces close together in the source are
 * read together, gaps included: a syscall per 4 KiB piece costs more than copying a gap of up to
 * READ_GAP from the page cache. Measured on 50,000 random 4 KiB writes (200 MB of data): 8 MiB
 * stages without gaps ~0.9 s, 32 MiB with 64 KiB gaps ~0.4 s (before fsync). The stage must be
 * large for gaps to be small, so it is 32 MiB (two of them, sized down for small layers), and
 * the next stage is gathered while the previous one is being written.
 */
const STAGE_BYTES = 32 << 20;
const COPY_CHUNK = 32 << 10;
const READ_GAP = 64 << 10;
const MAX_RUN = 1 << 20;
const READERS = 8;

export interface CommitSource {
  /** Sorted, non-overlapping live extents (a level-0 snapshot or a loaded layer index). */
  index: SegmentIndex;
  /** Where the extents' data is, at moffset * 512. */
  data: ByteSource;
  virtualSize: number;
  /** Copied into the output unless the options give one. */
  parentUuid?: string;
}

export interface CommitOptions {
  /** The new layer's UUID; null (all zeros) unless given, as upstream. */
  uuid?: string;
  parentUuid?: string;
  /** The user tag (commit message), at most 256 bytes. */
  message?: string;
}

export interface CommitResult {
  /** LSMT bytes written (before any compression). */
  bytes: number;
  dataBytes: number;
  /** Records after merging, without padding. */
  records: number;
  indexOffset: number;
}

/**
 * Appends a record with upstream's neighbour merge (`compress_raw_index`) applied as records come
 * (a left fold, so the result is the same). `mend` of a zeroed record is its moffset, so adjacent
 * zeroed extents merge too.
 */
function pushMerged(out: SegmentArrays, off: number, len: number, moff: number, zeroed: number, tag: number): void {
  const j = out.count - 1;
  if (j >= 0) {
    const l = out.length[j]!;
    const mend = out.zeroed[j] ? out.moffset[j]! : out.moffset[j]! + l;
    if (out.offset[j]! + l === off && mend === moff && out.zeroed[j] === zeroed
      && out.tag[j] === tag && l + len < MAX_EXTENT_SECTORS) {
      out.length[j] = l + len;
      return;
    }
  }
  out.push(off, len, moff, zeroed, tag);
}

/** Writes the committed layer to `out` (which the caller closes). */
export async function commitLayer(src: CommitSource, out: Sink, opts: CommitOptions = {}): Promise<CommitResult> {
  const message = opts.message ?? '';
  if (Buffer.byteLength(message, 'utf8') > USER_TAG_MAX) throw new RangeError(`commit message is longer than ${USER_TAG_MAX} bytes`);
  const fields = {
    virtualSize: src.virtualSize,
    uuid: opts.uuid,
    parentUuid: opts.parentUuid ?? src.parentUuid,
    userTag: message,
  };
  const start = out.position;
  await out.write(encodeHeader(headerFields({ ...fields, flags: FLAG_HEADER | FLAG_TYPE_DATA | FLAG_SEALED })));

  const idx = src.index;
  const records = new SegmentArrays(Math.max(256, idx.count));
  let total = 0;
  for (let i = 0; i < idx.count; i++) if (!idx.zeroed[i]) total += idx.length[i]! * SECTOR;
  const stager = new StagedCopy(src.data, out, total);
  let pos = HT_SPACE; // bytes of the LSMT stream so far, staged bytes included

  for (let i = 0; i < idx.count; i++) {
    const off = idx.offset[i]!;
    const len = idx.length[i]!;
    const tag = idx.tag[i]!;
    if (idx.zeroed[i]) {
      pushMerged(records, off, len, pos / SECTOR, 1, tag);
      continue;
    }
    // Upstream's pcopy emits one record per 32 KiB chunk and only then merges, so a long run
    // splits where the chunk that would reach 16383 sectors begins (e.g. 16320 + 63).
    let from = idx.moffset[i]! * SECTOR;
    let lba = off;
    let left = len * SECTOR;
    while (left > 0) {
      const n = Math.min(left, COPY_CHUNK);
      pushMerged(records, lba, n / SECTOR, pos / SECTOR, 0, tag);
      await stager.copy(from, n);
      from += n; left -= n; pos += n; lba += n / SECTOR;
    }
  }
  await stager.finish();

  const indexOffset = pos;
  const merged = records.trimmed();
  const pad = (INDEX_ALIGN_RECORDS - (merged.count % INDEX_ALIGN_RECORDS)) % INDEX_ALIGN_RECORDS;
  const indexBytes = encodeIndex(merged, pad);
  await out.write(indexBytes);
  await out.write(encodeHeader(headerFields({
    ...fields, flags: FLAG_TYPE_DATA | FLAG_SEALED, indexOffset, indexSize: merged.count + pad,
  })));
  return { bytes: out.position - start, dataBytes: indexOffset - HT_SPACE, records: merged.count, indexOffset };
}

/** Collects (source offset, length) pieces into a stage buffer and gathers them with few reads. */
class StagedCopy {
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

  /** `total`: the bytes that will be copied, so a small layer does not get full-size stages. */
  constructor(private readonly data: ByteSource, private readonly out: Sink, total: number) {
    this.file = data.name ?? 'layer data';
    const size = Math.max(COPY_CHUNK, Math.min(STAGE_BYTES, total));
    this.stages = [new Uint8Array(size), new Uint8Array(size)];
    this.stage = this.stages[0]!;
  }

  async copy(from: number, n: number): Promise<void> {
    if (this.staged + n > this.stage.length) await this.drain();
    const k = this.pSrc.length - 1;
    // Contiguous in both source and output: extend the previous piece.
    if (k >= 0 && this.pSrc[k]! + this.pLen[k]! === from && this.pDst[k]! + this.pLen[k]! === this.staged) {
      this.pLen[k] = this.pLen[k]! + n;
    } else {
      this.pSrc.push(from); this.pDst.push(this.staged); this.pLen.push(n);
    }
    this.staged += n;
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
    // Runs of pieces close together in the source: [first, last] indices into `order`.
    const runs: number[] = [];
    let first = 0;
    for (let j = 1; j <= count; j++) {
      if (j < count) {
        const runStart = this.pSrc[order[first]!]!;
        const prev = order[j - 1]!;
        const cur = order[j]!;
        const gap = this.pSrc[cur]! - (this.pSrc[prev]! + this.pLen[prev]!);
        if (gap >= 0 && gap <= READ_GAP && this.pSrc[cur]! + this.pLen[cur]! - runStart <= MAX_RUN) continue;
      }
      runs.push(first, j - 1);
      first = j;
    }
    let next = 0;
    const reader = async (slot: number): Promise<void> => {
      while (next < runs.length) {
        const a = runs[next++]!;
        const b = runs[next++]!;
        await this.readRun(order, a, b, slot);
      }
    };
    await Promise.all(Array.from({ length: READERS }, (_, s) => reader(s)));
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

  private async readRun(order: Uint32Array, a: number, b: number, slot: number): Promise<void> {
    const i0 = order[a]!;
    if (a === b) {
      await this.readExact(this.stage.subarray(this.pDst[i0]!, this.pDst[i0]! + this.pLen[i0]!), this.pSrc[i0]!);
      return;
    }
    const start = this.pSrc[i0]!;
    const last = order[b]!;
    const len = this.pSrc[last]! + this.pLen[last]! - start;
    const buf = (this.scratch[slot] ??= new Uint8Array(MAX_RUN)).subarray(0, len);
    await this.readExact(buf, start);
    for (let j = a; j <= b; j++) {
      const i = order[j]!;
      const at = this.pSrc[i]! - start;
      this.stage.set(buf.subarray(at, at + this.pLen[i]!), this.pDst[i]!);
    }
  }

  private async readExact(dst: Uint8Array, from: number): Promise<void> {
    const n = await this.data.read(dst, from);
    if (n !== dst.length) throw new FormatError(this.file, from + n, `extent data truncated: wanted ${dst.length} bytes at ${from}`);
  }
}
