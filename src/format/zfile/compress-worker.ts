/**
 * Worker thread body: compresses batches posted by CompressPool and posts the results back. A
 * batch's input is either a transferred buffer or a range of a file the parent has open, which
 * the worker reads itself (file descriptors are shared by every thread of the process), so
 * compressing a file costs the parent thread no reads and no copies.
 */
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { compressBatch, type BatchSpec } from './batch.ts';
import { replyError, type WorkerReply } from './worker-pool.ts';

/** A range of a file open in the parent: `length` bytes from `offset`. */
export interface FileRange {
  fd: number;
  offset: number;
}

export interface BatchRequest {
  spec: BatchSpec;
  input: ArrayBuffer | FileRange;
  inputLength: number;
  output: ArrayBuffer;
}

export interface BatchReply {
  /** The transferred input buffer handed back, or undefined for a file range. */
  input: ArrayBuffer | undefined;
  output: ArrayBuffer;
  outLength: number;
  lengths: Uint32Array;
}

/** Reused for file-range inputs; grown when a bigger batch arrives. */
let readBuffer = new Uint8Array(0);

function readRange(range: FileRange, length: number): Uint8Array {
  if (readBuffer.length < length) readBuffer = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(range.fd, readBuffer, done, length - done, range.offset + done);
    if (n === 0) throw new Error(`input ended at offset ${range.offset + done}, ${length - done} bytes short of its size when compression started`);
    done += n;
  }
  return readBuffer.subarray(0, length);
}

parentPort!.on('message', (req: BatchRequest) => {
  const transferred = req.input instanceof ArrayBuffer ? req.input : undefined;
  let reply: WorkerReply<BatchReply>;
  try {
    const input = transferred ? new Uint8Array(transferred, 0, req.inputLength) : readRange(req.input as FileRange, req.inputLength);
    const r = compressBatch(req.spec, input, new Uint8Array(req.output));
    reply = { ok: true, result: { input: transferred, output: r.output.buffer as ArrayBuffer, outLength: r.outLength, lengths: r.lengths } };
  } catch (err) {
    reply = { ok: false, ...replyError(err),
      result: { input: transferred, output: req.output, outLength: 0, lengths: new Uint32Array(0) } };
  }
  const res = reply.result;
  const transfer: ArrayBuffer[] = [res.output, res.lengths.buffer as ArrayBuffer];
  if (res.input && res.input !== res.output) transfer.push(res.input);
  parentPort!.postMessage(reply, transfer);
});
