/**
 * Opening an LSMT layer for reading (formats.md §2.6–2.9): committed and sealed layers (index
 * found through the trailer, validated as upstream `verify_ht` / `do_load_index`), the sparse RW
 * layer (index rebuilt from the data), and the writable data+index pair (log replayed).
 */
import { FormatError } from '../../errors.ts';
import { readFully, type ByteSource } from '../../io/types.ts';
import { FileSource } from '../../io/file.ts';
import {
  decodeHeader, FIRST_DATA_SECTOR, FLAG_HEADER, FLAG_SEALED, FLAG_SPARSE_RW, FLAG_TYPE_DATA, hasLsmtMagic, HT_SPACE,
} from './header.ts';
import { replayIndexLog } from './log-replay.ts';
import { decodeRecords, RECORD_SIZE, SegmentArrays } from './records.ts';
import { MAX_EXTENT_SECTORS, type LsmtHeaderFields, type ReadOnlyLayer, type SegmentIndex } from './types.ts';

/** MAX_LSMT_RO_INDEX_SIZE: records allowed in one read-only layer. */
export const MAX_RO_INDEX_RECORDS = 1_000_000;

export type LsmtKind = 'committed' | 'sealed' | 'sparse' | 'writable';

/** A read-only layer plus what `dadi layer info` reports about it. */
export interface LsmtLayer extends ReadOnlyLayer {
  readonly kind: LsmtKind;
  readonly header: LsmtHeaderFields;
  readonly trailer?: LsmtHeaderFields;
}

class OpenedLayer implements LsmtLayer {
  readonly virtualSize: number;
  readonly uuid: string;
  readonly parentUuid: string;
  constructor(
    readonly name: string,
    readonly kind: LsmtKind,
    readonly header: LsmtHeaderFields,
    readonly trailer: LsmtHeaderFields | undefined,
    readonly index: SegmentIndex,
    readonly data: ByteSource,
    private readonly others: ByteSource[] = [],
  ) {
    const fields = trailer ?? header;
    this.virtualSize = fields.virtualSize;
    this.uuid = fields.uuid;
    this.parentUuid = fields.parentUuid;
  }

  async close(): Promise<void> {
    await this.data.close();
    for (const o of this.others) await o.close();
  }
}

async function readHeader(src: ByteSource, file: string): Promise<LsmtHeaderFields> {
  if (src.size < HT_SPACE) throw new FormatError(file, 0, `truncated: ${src.size} bytes, less than the 4096-byte LSMT header`);
  const b = new Uint8Array(HT_SPACE);
  await readFully(src, b, 0);
  const h = decodeHeader(b, file, 0);
  if (!(h.flags & FLAG_HEADER)) throw new FormatError(file, 28, `header flags 0x${h.flags.toString(16)} do not have the header bit set`);
  return h;
}

/** Opens a committed, sealed or sparse-RW layer from its (decompressed, un-tarred) bytes. */
export async function openReadOnlyLayer(data: ByteSource, name: string): Promise<LsmtLayer> {
  const header = await readHeader(data, name);
  if (header.flags & FLAG_SPARSE_RW) return openSparse(data, name, header);
  if (!(header.flags & FLAG_TYPE_DATA)) {
    throw new FormatError(name, 28, 'this is the index file of a writable layer; open it together with its data file');
  }
  const trailerAt = data.size - HT_SPACE;
  const tb = new Uint8Array(HT_SPACE);
  if (trailerAt >= HT_SPACE) await readFully(data, tb, trailerAt);
  if (trailerAt < HT_SPACE || !hasLsmtMagic(tb)) {
    if (!(header.flags & FLAG_SEALED)) {
      throw new FormatError(name, Math.max(trailerAt, 0),
        'a writable layer data file without a trailer: open it together with its index file (or seal it)');
    }
    throw new FormatError(name, Math.max(trailerAt, 0), 'trailer: LSMT magic not found (file truncated or not a committed layer)');
  }
  const trailer = decodeHeader(tb, name, trailerAt, 'trailer');
  const f = trailer.flags;
  if (f & FLAG_HEADER || !(f & FLAG_TYPE_DATA) || !(f & FLAG_SEALED)) {
    throw new FormatError(name, trailerAt + 28, `trailer flags 0x${f.toString(16)}: expected trailer, data and sealed bits (0x6)`);
  }
  const index = await loadCommittedIndex(data, name, trailer, trailerAt);
  return new OpenedLayer(name, header.flags & FLAG_SEALED ? 'committed' : 'sealed', header, trailer, index, data);
}

async function loadCommittedIndex(data: ByteSource, name: string, t: LsmtHeaderFields, trailerAt: number): Promise<SegmentIndex> {
  const at = trailerAt + 40;
  if (t.indexSize > MAX_RO_INDEX_RECORDS) {
    throw new FormatError(name, at, `trailer index_size ${t.indexSize} exceeds the limit of ${MAX_RO_INDEX_RECORDS} records`);
  }
  if (t.indexOffset < HT_SPACE || t.indexOffset % 512 !== 0) {
    throw new FormatError(name, trailerAt + 32, `trailer index_offset ${t.indexOffset} is not a 512-aligned offset after the header`);
  }
  if (t.indexOffset + t.indexSize * RECORD_SIZE > trailerAt) {
    throw new FormatError(name, trailerAt + 32,
      `index points outside the file: ${t.indexSize} records at ${t.indexOffset} run past the trailer at ${trailerAt}`);
  }
  const bytes = new Uint8Array(t.indexSize * RECORD_SIZE);
  await readFully(data, bytes, t.indexOffset);
  const out = new SegmentArrays(t.indexSize);
  const numbers: number[] = [];
  decodeRecords(bytes, out, { file: name, base: t.indexOffset }, numbers);
  const limit = t.indexOffset / 512;
  let prevEnd = -1;
  let kept = 0;
  for (let j = 0; j < out.count; j++) {
    const rec = numbers[j]!;
    const where = t.indexOffset + rec * RECORD_SIZE;
    const off = out.offset[j]!;
    const len = out.length[j]!;
    const moff = out.moffset[j]!;
    if (len === 0) continue; // describes nothing; upstream ignores it too when reading
    if (off < prevEnd) {
      const prev = numbers[j - 1]!;
      throw new FormatError(name, where, off < out.offset[kept - 1]!
        ? `index record ${rec} is not sorted: it starts at sector ${off}, before record ${prev} (sector ${out.offset[kept - 1]!})`
        : `index record ${rec} overlaps record ${prev} (starts at sector ${off}, previous ends at ${prevEnd})`);
    }
    if (out.zeroed[j]) {
      if (moff < FIRST_DATA_SECTOR || moff > limit) {
        throw new FormatError(name, where, `index record ${rec}: zeroed extent moffset ${moff} outside [8, ${limit}]`);
      }
    } else if (moff < FIRST_DATA_SECTOR || moff + len > limit) {
      throw new FormatError(name, where,
        `index record ${rec}: data [${moff}, ${moff + len}) sectors lies outside the data area [8, ${limit}) (index points outside the data)`);
    }
    prevEnd = off + len;
    if (kept !== j) {
      out.offset[kept] = off; out.length[kept] = len; out.moffset[kept] = moff; out.zeroed[kept] = out.zeroed[j]!;
      numbers[kept] = rec;
    }
    kept++;
  }
  out.count = kept;
  return out.trimmed();
}

/** True when every byte of `b` is zero (compared a word at a time). */
export function isAllZero(b: Uint8Array): boolean {
  const words = b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2) : undefined;
  if (words) {
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    for (let i = words.length * 4; i < b.length; i++) if (b[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const SCAN_CHUNK = 1 << 20;

/**
 * Sparse RW layer (§2.9). Upstream rebuilds the index with SEEK_DATA/SEEK_HOLE, which Node does
 * not expose and which a ByteSource (possibly remote or decompressed) cannot answer anyway. We scan
 * the image instead and map every non-zero sector: all-zero sectors read as zeros whether or not
 * they were allocated, so the logical bytes are identical; only the extent boundaries differ.
 */
async function openSparse(data: ByteSource, name: string, header: LsmtHeaderFields): Promise<LsmtLayer> {
  const out = new SegmentArrays(256);
  const imageEnd = Math.min(data.size, HT_SPACE + header.virtualSize);
  const buf = new Uint8Array(SCAN_CHUNK);
  let runStart = -1; // first sector (LBA) of the current non-zero run
  let runLen = 0;
  const closeRun = (): void => {
    while (runLen > 0) {
      const n = Math.min(runLen, MAX_EXTENT_SECTORS);
      out.push(runStart, n, runStart + FIRST_DATA_SECTOR, 0);
      runStart += n; runLen -= n;
    }
    runStart = -1;
  };
  for (let pos = HT_SPACE; pos < imageEnd; pos += SCAN_CHUNK) {
    const n = await data.read(buf.subarray(0, Math.min(SCAN_CHUNK, imageEnd - pos)), pos);
    const chunk = buf.subarray(0, n);
    if (isAllZero(chunk)) { closeRun(); continue; }
    for (let s = 0; s < n; s += 512) {
      const sector = (pos - HT_SPACE + s) / 512;
      if (isAllZero(chunk.subarray(s, Math.min(s + 512, n)))) closeRun();
      else if (runStart < 0) { runStart = sector; runLen = 1; }
      else runLen++;
    }
  }
  closeRun();
  return new OpenedLayer(name, 'sparse', header, undefined, out.trimmed(), data);
}

/** The writable pair (data file + index log) as a read-only layer: the log replayed (§2.7). */
export async function openWritablePairReadOnly(data: ByteSource, index: ByteSource, name?: string): Promise<LsmtLayer> {
  const dataName = data.name ?? name ?? 'data';
  const indexName = index.name ?? 'index';
  const header = await readHeader(data, dataName);
  if (!(header.flags & FLAG_TYPE_DATA)) throw new FormatError(dataName, 28, 'expected a writable layer data file, found an index file');
  const ih = await readHeader(index, indexName);
  if (ih.flags & FLAG_TYPE_DATA) throw new FormatError(indexName, 28, 'expected a writable layer index file, found a data file');
  const { map } = await replayIndexLog(index, data.size, indexName);
  return new OpenedLayer(name ?? dataName, 'writable', header, undefined, map.toIndex(), data, [index]);
}

/**
 * The writable pair at these paths as a read-only layer (to stack below others, or to commit
 * from: the data file declares synchronous reads, so commit gathers its extents piece by piece);
 * both files are closed again if opening fails.
 */
export async function openWritablePairFiles(dataPath: string, indexPath: string): Promise<LsmtLayer> {
  const data = await FileSource.open(dataPath);
  let index: FileSource | undefined;
  try {
    index = await FileSource.open(indexPath);
    return await openWritablePairReadOnly(data, index, dataPath);
  } catch (err) {
    await index?.close();
    await data.close();
    throw err;
  }
}
