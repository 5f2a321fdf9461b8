/**
 * Bulk decompression of a whole ZFile on worker threads: each worker opens the file itself and
 * decompresses a chunk of the output. Into a file, each worker writes its chunks at their own
 * offsets; into any other sink, chunks come back and are written in order while the next ones
 * are decompressed. Used for large files, where one core is the bottleneck.
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

async function fileKey(path: string): Promise<string> {
  const st = await stat(path);
  return `${path}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

/**
 * Runs one job per chunk of [0, size), at most two per worker at a time, handing each result to
 * `done` in chunk order. On a failure, waits for the jobs already started and rethrows it.
 */
async function inChunks(size: number, job: (offset: number, length: number) => Promise<ChunkReply>,
  done: (r: ChunkReply) => Promise<void>): Promise<void> {
  const maxInFlight = 2 * pool().size;
  const inFlight: Promise<ChunkReply>[] = [];
  try {
    for (let offset = 0; offset < size; offset += CHUNK) {
      const j = job(offset, Math.min(CHUNK, size - offset));
      j.catch(() => undefined);
      inFlight.push(j);
      while (inFlight.length >= maxInFlight) await done(await inFlight.shift()!);
    }
    while (inFlight.length > 0) await done(await inFlight.shift()!);
  } finally {
    await Promise.allSettled(inFlight);
  }
}

/** Writes the `size` decompressed bytes of the ZFile (possibly tar-wrapped) at `path` to `sink`. */
export async function parallelCopyOut(path: string, name: string, size: number, sink: Sink): Promise<void> {
  const key = await fileKey(path);
  const free: ArrayBuffer[] = [];
  await inChunks(size, (offset, length) => {
    const buffer = free.pop() ?? new ArrayBuffer(CHUNK);
    return pool().run({ path, name, key, offset, length, into: buffer }, [buffer]);
  }, async (r) => {
    await sink.write(new Uint8Array(r.buffer!, 0, r.length));
    free.push(r.buffer!);
  });
}

/**
 * Writes the `size` decompressed bytes of the ZFile at `path` into the file open as `fd`, at
 * their own offsets (the workers write; nothing passes through this thread).
 */
export async function parallelDecompressToFile(path: string, name: string, size: number, fd: number): Promise<void> {
  const key = await fileKey(path);
  await inChunks(size, (offset, length) => pool().run({ path, name, key, offset, length, into: { fd } }, []),
    async () => undefined);
}
