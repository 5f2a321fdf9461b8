/**
 * A local file as a commit source that can also read synchronously, so commit gathers its
 * extents piece by piece on the calling thread (see commit-stage.ts) instead of through the pool.
 * Size is taken once, at open, as FileSource does.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { FileSource } from '../../io/file.ts';
import type { SyncReadableSource } from './commit-stage.ts';
import { preadOnce, preadSync } from './positional-io.ts';
import { openWritablePairReadOnly, type LsmtLayer } from './readonly.ts';

/**
 * The writable pair at these paths as a read-only layer to commit from, its data file readable
 * synchronously; both files are closed again if opening fails.
 */
export async function openWritablePairForCommit(dataPath: string, indexPath: string): Promise<LsmtLayer> {
  const data = LocalDataFile.open(dataPath);
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

export class LocalDataFile implements SyncReadableSource {
  private fd: number;
  private constructor(fd: number, readonly size: number, readonly name: string) {
    this.fd = fd;
  }

  static open(path: string): LocalDataFile {
    const fd = openSync(path, 'r');
    try {
      return new LocalDataFile(fd, fstatSync(fd).size, path);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    return preadSync(this.fd, dst, dstOffset, this.clamp(length, position), position);
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    const want = this.clamp(dst.length, offset);
    let done = 0;
    while (done < want) {
      const n = await preadOnce(this.fd, dst, done, want - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    closeSync(fd);
  }

  private clamp(length: number, position: number): number {
    return Math.max(0, Math.min(length, this.size - position));
  }
}
