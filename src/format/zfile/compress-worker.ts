/** Worker thread body: compresses batches posted by CompressPool and posts the results back. */
import { parentPort } from 'node:worker_threads';
import { compressBatch, type BatchSpec } from './batch.ts';
import { replyError, type WorkerReply } from './worker-pool.ts';

export interface BatchRequest {
  spec: BatchSpec;
  input: ArrayBuffer;
  inputLength: number;
  output: ArrayBuffer;
}

export interface BatchReply {
  input: ArrayBuffer;
  output: ArrayBuffer;
  outLength: number;
  lengths: Uint32Array;
}

parentPort!.on('message', (req: BatchRequest) => {
  let reply: WorkerReply<BatchReply>;
  try {
    const r = compressBatch(req.spec, new Uint8Array(req.input, 0, req.inputLength), new Uint8Array(req.output));
    reply = { ok: true, result: { input: req.input, output: r.output.buffer as ArrayBuffer, outLength: r.outLength, lengths: r.lengths } };
  } catch (err) {
    reply = { ok: false, ...replyError(err),
      result: { input: req.input, output: req.output, outLength: 0, lengths: new Uint32Array(0) } };
  }
  const res = reply.result;
  parentPort!.postMessage(reply, [res.input, ...(res.output === res.input ? [] : [res.output]), res.lengths.buffer as ArrayBuffer]);
});
