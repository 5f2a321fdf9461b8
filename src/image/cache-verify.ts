/**
 * `dadi cache verify`: checks a block cache offline. Online, only verified bytes enter the cache
 * (the verify filter sits below it), so the cache's presence map doubles as the record of which
 * chunks were verified and a restart re-verifies nothing; this check is for what can happen to
 * the files afterwards (a bad disk, a shared or copied cache directory, a hand edit).
 *
 * Per cached blob: a complete blob is hashed whole against its digest; otherwise every chunk whose
 * bytes are all present is hashed against the digest table kept beside it (`<hex>.table`, the
 * table member as checked against its annotation at attach). A blob with neither cannot be
 * checked piecewise and is reported as such.
 */
import { createHash } from 'node:crypto';
import { open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import { tableFromMember } from '../format/tar/digest-table.ts';
import { cachePaths } from '../io/cache.ts';
import { loadPresence, readPresenceSummary } from '../io/cache/presence.ts';

export type Verdict = 'ok' | 'bad' | 'unchecked';

export interface BlobReport {
  digest: string;
  size: number;
  presentBytes: number;
  /** How it was checked: the whole blob's sha256, the chunk table, or not at all. */
  method: 'whole' | 'table' | 'none';
  verdict: Verdict;
  /** Chunks of the table whose bytes are all cached, and those that matched. */
  chunksPresent: number;
  chunksVerified: number;
  /** Indexes of chunks that did not match (table method). */
  badChunks: number[];
  /** Why a blob is bad or unchecked. */
  note?: string;
}

async function readRange(fh: FileHandle, buf: Buffer, len: number, at: number): Promise<Buffer> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, at + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

async function wholeDigest(fh: FileHandle, size: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  for (let at = 0; at < size; at += buf.length) h.update(await readRange(fh, buf, Math.min(buf.length, size - at), at));
  return `sha256:${h.digest('hex')}`;
}

async function checkBlob(dir: string, hex: string): Promise<BlobReport | undefined> {
  const { dataPath, mapPath, tablePath } = cachePaths(dir, hex);
  const digest = `sha256:${hex}`;
  const summary = await readPresenceSummary(mapPath);
  if (!summary) return undefined;
  const map = await loadPresence(mapPath, summary.size, summary.unit);
  const base: BlobReport = { digest, size: summary.size, presentBytes: summary.presentBytes, method: 'none', verdict: 'unchecked', chunksPresent: 0, chunksVerified: 0, badChunks: [] };
  if (!map) return { ...base, note: 'presence map unreadable' };
  const fh = await open(dataPath, 'r').catch(() => undefined);
  if (!fh) return { ...base, note: 'data file missing' };
  try {
    if (map.complete) {
      const got = await wholeDigest(fh, map.size);
      return { ...base, method: 'whole', verdict: got === digest ? 'ok' : 'bad', ...(got === digest ? {} : { note: `the data hashes to ${got}` }) };
    }
    const member = await readFile(tablePath).catch(() => undefined);
    if (!member) return { ...base, note: 'no digest table (the layer has none, or it was cached before dadi kept tables)' };
    let table;
    try {
      table = tableFromMember(member, tablePath);
    } catch (err) {
      return { ...base, verdict: 'bad', method: 'table', note: errorMessage(err) };
    }
    if (table.covered + member.length !== map.size) {
      return { ...base, verdict: 'bad', method: 'table', note: `the table covers ${table.covered} + ${member.length} bytes, the blob has ${map.size}` };
    }
    const r: BlobReport = { ...base, method: 'table' };
    const buf = Buffer.allocUnsafe(table.chunkSize);
    const n = Math.ceil(table.covered / table.chunkSize);
    for (let i = 0; i < n; i++) {
      const start = i * table.chunkSize;
      const end = Math.min(table.covered, start + table.chunkSize);
      if (!map.rangePresent(start, end)) continue;
      r.chunksPresent++;
      const bytes = await readRange(fh, buf, end - start, start);
      const got = createHash('sha256').update(bytes).digest();
      if (Buffer.compare(got, table.digests.subarray(i * 32, i * 32 + 32)) === 0) r.chunksVerified++;
      else r.badChunks.push(i);
    }
    if (map.size > table.covered && map.rangePresent(table.covered, map.size)) {
      const tail = await readRange(fh, Buffer.allocUnsafe(member.length), member.length, table.covered);
      if (!tail.equals(member)) { r.badChunks.push(n); r.note = 'the cached table member differs from the verified table'; }
    }
    r.verdict = r.badChunks.length > 0 ? 'bad' : 'ok';
    return r;
  } finally {
    await fh.close();
  }
}

/** Checks every blob in the cache at `dir`; with `evictBad`, removes the blobs found bad (only while no daemon uses the cache). */
export async function verifyCache(dir: string, opts: { evictBad?: boolean; onBlob?: (r: BlobReport) => void } = {}): Promise<BlobReport[]> {
  const blobDir = join(dir, 'blobs', 'sha256');
  const names = await readdir(blobDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new Error(`${dir}: not a dadi cache (no blobs/sha256 directory)`);
    throw err;
  });
  const out: BlobReport[] = [];
  for (const name of names.sort()) {
    const m = /^([0-9a-f]{64})\.map$/.exec(name);
    if (!m) continue;
    const r = await checkBlob(dir, m[1]!);
    if (!r) continue;
    if (r.verdict === 'bad' && opts.evictBad) {
      const p = cachePaths(dir, m[1]!);
      // Map first, as the cache evicts: a data file without a map is removed at the next open.
      await rm(p.mapPath, { force: true });
      await rm(p.dataPath, { force: true });
      await rm(p.tablePath, { force: true });
      r.note = `${r.note ? `${r.note}; ` : ''}evicted`;
    }
    opts.onBlob?.(r);
    out.push(r);
  }
  return out;
}
