/**
 * Worker thread body for bulk decompression: reads a range of a ZFile's decompressed bytes into
 * the buffer it is handed. Each worker keeps the last file it opened (keyed by path and identity,
 * so a replaced file is reopened).
 */
import { parentPort } from 'node:worker_threads';
import { FileSource } from '../../io/file.ts';
import { openZFile } from './open.ts';
import type { ZFileReader } from './reader.ts';
import { replyError, type WorkerReply } from './worker-pool.ts';

export interface ChunkRequest {
  path: string;
  /** Name used in error messages. */
  name: string;
  /** Identity of the file (path, inode, size, mtime) the reader must match. */
  key: string;
  offset: number;
  length: number;
  buffer: ArrayBuffer;
}

export interface ChunkReply {
  buffer: ArrayBuffer;
  length: number;
}

let open: { key: string; reader: Promise<ZFileReader> } | undefined;

async function readerFor(req: ChunkRequest): Promise<ZFileReader> {
  if (open?.key !== req.key) {
    const previous = open;
    open = {
      key: req.key,
      reader: FileSource.open(req.path).then((src) => openZFile({
        size: src.size, name: req.name, read: (d, o) => src.read(d, o), close: () => src.close(),
      })),
    };
    if (previous) void previous.reader.then((r) => r.close(), () => undefined);
  }
  return open.reader;
}

// Requests are served one at a time so replies leave in the order they came (the pool relies on it).
let queue: Promise<void> = Promise.resolve();

parentPort!.on('message', (req: ChunkRequest) => {
  queue = queue.then(async (): Promise<void> => {
    let reply: WorkerReply<ChunkReply>;
    try {
      const reader = await readerFor(req);
      const n = await reader.read(new Uint8Array(req.buffer, 0, req.length), req.offset);
      reply = { ok: true, result: { buffer: req.buffer, length: n } };
    } catch (err) {
      if (open?.key === req.key) {
        void open.reader.then((r) => r.close(), () => undefined);
        open = undefined;
      }
      reply = { ok: false, ...replyError(err), result: { buffer: req.buffer, length: 0 } };
    }
    parentPort!.postMessage(reply, [req.buffer]);
  });
});
