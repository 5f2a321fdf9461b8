/**
 * Worker thread body for ZFileReader's large reads: checks and decompresses a run of whole blocks
 * from shared memory into shared memory, so a 1 MiB read keeps every core decompressing while the
 * main thread serves sockets. The main thread read the compressed bytes; nothing is copied here.
 */
import { parentPort } from 'node:worker_threads';
import { decodeInto } from './block-decode.ts';
import { BlockDecompressor } from './codec.ts';
import type { ZFileAlgo } from './header.ts';
import type { WorkerReply } from './worker-pool.ts';

export interface DecodeRequest {
  algo: ZFileAlgo;
  /** Blocks carry a trailing CRC (the header's verify byte). */
  stored: boolean;
  /** Check those CRCs. */
  check: boolean;
  /** Compressed bytes; block i occupies [starts[i], starts[i+1]) and has 4 writable bytes in front. */
  window: SharedArrayBuffer;
  starts: Int32Array;
  /** Decompressed output: block i lands at outOffset + i * blockSize, blockSize bytes each. */
  out: SharedArrayBuffer;
  outOffset: number;
  blockSize: number;
}

/** Undefined on success; else the first bad block (index into the request) and what was wrong. */
export type DecodeFailure = { block: number; problem: string } | undefined;

if (parentPort) {
  const port = parentPort;
  const decoders = new Map<ZFileAlgo, BlockDecompressor>();
  port.on('message', (req: DecodeRequest) => {
    let failure: DecodeFailure;
    try {
      let dec = decoders.get(req.algo);
      if (!dec) decoders.set(req.algo, dec = new BlockDecompressor(req.algo));
      const window = new Uint8Array(req.window);
      const count = req.starts.length - 1;
      for (let i = 0; i < count; i++) {
        const out = new Uint8Array(req.out, req.outOffset + i * req.blockSize, req.blockSize);
        const problem = decodeInto(dec, req.stored, req.check, window, req.starts[i]!, req.starts[i + 1]!, out);
        if (problem !== undefined) {
          failure = { block: i, problem };
          break;
        }
      }
    } catch (err) {
      failure = { block: 0, problem: String((err as Error)?.message ?? err) };
    }
    const reply: WorkerReply<DecodeFailure> = { ok: true, result: failure };
    port.postMessage(reply);
  });
}
