/**
 * Worker thread body for bulk decompression: reads a range of a ZFile's decompressed bytes into
 * the buffer it is handed, or writes them itself at the same offset of an output file the parent
 * has open (file descriptors are shared by every thread of the process), which spares the parent
 * the transfer and the write. Each worker keeps the last file it opened (keyed by path and
 * identity, so a replaced file is reopened).
 */
import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { FileSource } from '../../io/file.ts';
import { NamedSource } from '../../io/filter.ts';
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
  /** Where the bytes go: a transferred buffer handed back in the reply, or an output file written at `offset`. */
  into: ArrayBuffer | { fd: number };
}

export interface ChunkReply {
  /** The transferred buffer, or undefined when the worker wrote the bytes to the output file. */
  buffer: ArrayBuffer | undefined;
  length: number;
}

/** Scratch for chunks written to a file by this worker; grown when a bigger chunk arrives. */
let scratch = new Uint8Array(0);

function writeAt(fd: number, data: Uint8Array, offset: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
}

let open: { key: string; reader: Promise<ZFileReader> } | undefined;

async function readerFor(req: ChunkRequest): Promise<ZFileReader> {
  if (open?.key !== req.key) {
    const previous = open;
    open = {
      key: req.key,
      reader: FileSource.open(req.path).then((src) => openZFile(new NamedSource(src, req.name))),
    };
    if (previous) void previous.reader.then((r) => r.close(), () => undefined);
  }
  return open.reader;
}

// Requests are served one at a time so replies leave in the order they came (the pool relies on it).
let queue: Promise<void> = Promise.resolve();

parentPort!.on('message', (req: ChunkRequest) => {
  queue = queue.then(async (): Promise<void> => {
    const buffer = req.into instanceof ArrayBuffer ? req.into : undefined;
    let reply: WorkerReply<ChunkReply>;
    try {
      const reader = await readerFor(req);
      if (!buffer && scratch.length < req.length) scratch = new Uint8Array(req.length);
      const dst = buffer ? new Uint8Array(buffer, 0, req.length) : scratch.subarray(0, req.length);
      const n = await reader.read(dst, req.offset);
      if (n !== req.length) throw new Error(`${req.name}: read ${n} of ${req.length} bytes at ${req.offset}`);
      if (!buffer) writeAt((req.into as { fd: number }).fd, dst, req.offset);
      reply = { ok: true, result: { buffer, length: n } };
    } catch (err) {
      if (open?.key === req.key) {
        void open.reader.then((r) => r.close(), () => undefined);
        open = undefined;
      }
      reply = { ok: false, ...replyError(err), result: { buffer, length: 0 } };
    }
    parentPort!.postMessage(reply, buffer ? [buffer] : []);
  });
});
