/** Worker thread body: compresses batches posted by CompressPool and posts the results back. */
import { parentPort } from 'node:worker_threads';
import { compressBatch, type BatchSpec } from './batch.ts';

export interface BatchRequest {
  spec: BatchSpec;
  input: ArrayBuffer;
  inputLength: number;
  output: ArrayBuffer;
}

export type BatchReply =
  | { ok: true; input: ArrayBuffer; output: ArrayBuffer; outLength: number; lengths: Uint32Array }
  | { ok: false; input: ArrayBuffer; output: ArrayBuffer; error: string };

parentPort!.on('message', (req: BatchRequest) => {
  try {
    const r = compressBatch(req.spec, new Uint8Array(req.input, 0, req.inputLength), new Uint8Array(req.output));
    const out = r.output.buffer as ArrayBuffer;
    const reply: BatchReply = { ok: true, input: req.input, output: out, outLength: r.outLength, lengths: r.lengths };
    parentPort!.postMessage(reply, [req.input, out, r.lengths.buffer as ArrayBuffer]);
  } catch (err) {
    const reply: BatchReply = { ok: false, input: req.input, output: req.output, error: String((err as Error)?.stack ?? err) };
    parentPort!.postMessage(reply, [req.input, req.output]);
  }
});
