/**
 * Commit to a file with the output options of `overlaybd-commit`: plain, ZFile-compressed (-z),
 * and/or tar-wrapped (-t). The sinks stack: file ← tar wrapper ← ZFile writer ← commit.
 */
import { FileSink, type Sink } from '../../io/sink.ts';
import { TarWrapSink } from '../tar/writer.ts';
import { ZFileWriter } from '../zfile/writer.ts';
import type { ZFileAlgo } from '../zfile/header.ts';
import { commitLayer, type CommitOptions, type CommitResult, type CommitSource } from './commit.ts';

export interface CommitFileOptions extends CommitOptions {
  compress?: ZFileAlgo;
  /** ZFile block size in bytes (default 4 KiB, as upstream). */
  blockSize?: number;
  /** Per-block CRC (default on, as the upstream tools always set it). */
  checksum?: boolean;
  tar?: boolean;
  /** ZFile compression threads (default: the shared pool). */
  workers?: number;
}

/** A FileSink that fsyncs when closed: the wrappers write their last bytes inside close(). */
class DurableFileSink implements Sink {
  readonly seekable = true;
  constructor(private readonly inner: FileSink) {}
  get position(): number { return this.inner.position; }
  write(data: Uint8Array): Promise<void> { return this.inner.write(data); }
  pwrite(data: Uint8Array, offset: number): Promise<void> { return this.inner.pwrite(data, offset); }
  sync(): Promise<void> { return this.inner.sync(); }
  async close(): Promise<void> {
    await this.inner.sync();
    await this.inner.close();
  }
}

export async function commitToFile(src: CommitSource, outPath: string, opts: CommitFileOptions = {}): Promise<CommitResult> {
  const file = new DurableFileSink(await FileSink.create(outPath));
  let sink: Sink = file;
  try {
    if (opts.tar) sink = await TarWrapSink.create(sink);
    if (opts.compress) {
      sink = await ZFileWriter.create(sink, {
        algo: opts.compress, blockSize: opts.blockSize ?? 4096, checksum: opts.checksum ?? true,
        ...(opts.workers === undefined ? {} : { workers: opts.workers }),
      });
    }
    const res = await commitLayer(src, sink, opts);
    await sink.close();
    return res;
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}
