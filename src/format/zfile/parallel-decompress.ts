/**
 * Bulk decompression of a whole ZFile on worker threads: each worker opens the file itself and
 * decompresses a chunk of the output into a buffer it is handed; chunks are written in order
 * while the next ones are decompressed. Used for large files, where one core is the bottleneck.
 */
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type { Sink } from '../../io/sink.ts';
import type { ChunkReply, ChunkRequest } from './decompress-worker.ts';
import { WorkerPool } from './worker-pool.ts';

const CHUNK = 4 << 20;

let shared: WorkerPool<ChunkRequest, ChunkReply> | undefined;

function pool(): WorkerPool<ChunkRequest, ChunkReply> {
  shared ??= new WorkerPool('decompress-worker', Math.max(1, availableParallelism()));
  return shared;
}

/** Writes the `size` decompressed bytes of the ZFile (possibly tar-wrapped) at `path` to `sink`. */
export async function parallelCopyOut(path: string, name: string, size: number, sink: Sink): Promise<void> {
  const st = await stat(path);
  const key = `${path}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  const p = pool();
  const maxInFlight = 2 * p.size;
  const free: ArrayBuffer[] = [];
  const inFlight: Promise<ChunkReply>[] = [];
  let failure: unknown;
  const drainOne = async (): Promise<void> => {
    const r = await inFlight.shift()!;
    await sink.write(new Uint8Array(r.buffer, 0, r.length));
    free.push(r.buffer);
  };
  try {
    for (let offset = 0; offset < size; offset += CHUNK) {
      const buffer = free.pop() ?? new ArrayBuffer(CHUNK);
      const job = p.run({ path, name, key, offset, length: Math.min(CHUNK, size - offset), buffer }, [buffer]);
      job.catch((e: unknown) => { failure ??= e; });
      inFlight.push(job);
      while (inFlight.length >= maxInFlight) await drainOne();
    }
    while (inFlight.length > 0) await drainOne();
  } finally {
    if (failure !== undefined) {
      await Promise.allSettled(inFlight);
    }
  }
}
