/**
 * Replaying a writable layer's index log (formats.md §2.7): records apply in file order, later
 * ones win. A crash can leave a torn tail (a partial record, a record whose data never reached
 * the data file, or a zero-filled slot from out-of-order appends); those are skipped with a
 * warning, since only writes acknowledged after a flush are promised to survive.
 */
import { FormatError } from '../../errors.ts';
import { readFully, type ByteSource } from '../../io/types.ts';
import { log } from '../../util/log.ts';
import { ExtentMap } from './extent-map.ts';
import { FIRST_DATA_SECTOR, HT_SPACE } from './header.ts';
import { decodeRecords, RECORD_SIZE, SegmentArrays } from './records.ts';

export const MAX_RW_RECORDS = 128_000_000;
const BATCH_RECORDS = 65536;

export interface ReplayResult {
  map: ExtentMap;
  /** Bytes of the index file holding whole records (where the next record goes). */
  validIndexBytes: number;
  skipped: number;
  /**
   * File offsets of whole records that were ignored. A writer must overwrite them with invalid
   * records: a record pointing past today's data end would otherwise come alive once the data
   * file grows past it again.
   */
  ignoredRecordOffsets: number[];
}

/** Reads the log of `index` (from byte 4096) into a level-0 map, checking against the data size. */
export async function replayIndexLog(index: ByteSource, dataSize: number, indexName: string): Promise<ReplayResult> {
  const logBytes = Math.max(0, index.size - HT_SPACE);
  const n = Math.floor(logBytes / RECORD_SIZE);
  if (n > MAX_RW_RECORDS) {
    throw new FormatError(indexName, HT_SPACE, `index log holds ${n} records; at most ${MAX_RW_RECORDS} are allowed`);
  }
  let skipped = 0;
  const ignoredRecordOffsets: number[] = [];
  if (logBytes % RECORD_SIZE !== 0) {
    skipped++;
    log.warn({ file: indexName, offset: HT_SPACE + n * RECORD_SIZE }, 'ignoring a partial record at the end of the index log (torn write)');
  }
  const dataSectors = Math.floor(dataSize / 512);
  const map = new ExtentMap();
  const buf = new Uint8Array(BATCH_RECORDS * RECORD_SIZE);
  const batch = new SegmentArrays(BATCH_RECORDS);
  const numbers: number[] = [];
  for (let first = 0; first < n; first += BATCH_RECORDS) {
    const k = Math.min(BATCH_RECORDS, n - first);
    const base = HT_SPACE + first * RECORD_SIZE;
    const bytes = buf.subarray(0, k * RECORD_SIZE);
    await readFully(index, bytes, base);
    batch.count = 0;
    numbers.length = 0;
    decodeRecords(bytes, batch, { file: indexName, base }, numbers);
    for (let j = 0; j < batch.count; j++) {
      const len = batch.length[j]!;
      const moff = batch.moffset[j]!;
      const at = base + numbers[j]! * RECORD_SIZE;
      if (len === 0) {
        skipped++;
        ignoredRecordOffsets.push(at);
        log.warn({ file: indexName, offset: at }, 'ignoring an empty index record (an unwritten slot left by a crash)');
        continue;
      }
      if (moff < FIRST_DATA_SECTOR) {
        throw new FormatError(indexName, at, `index record ${first + numbers[j]!} points into the data file header (moffset ${moff})`);
      }
      if (batch.zeroed[j] === 0 && moff + len > dataSectors) {
        skipped++;
        ignoredRecordOffsets.push(at);
        log.warn({ file: indexName, offset: at, moffset: moff, length: len, dataSectors },
          'ignoring an index record whose data lies past the data file end (torn write)');
        continue;
      }
      map.insert(batch.offset[j]!, len, moff, batch.zeroed[j]!);
    }
  }
  return { map, validIndexBytes: HT_SPACE + n * RECORD_SIZE, skipped, ignoredRecordOffsets };
}
