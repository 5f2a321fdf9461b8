/** Batch compression on worker threads (see compress-worker.ts), one worker per core by default. */
import { availableParallelism } from 'node:os';
import type { BatchSpec, BatchResult } from './batch.ts';
import type { BatchReply, BatchRequest, FileRange } from './compress-worker.ts';
import { WorkerPool } from './worker-pool.ts';

export interface PooledResult extends BatchResult {
  /** The input buffer, handed back for reuse (undefined when the worker read a file range). */
  input: Uint8Array | undefined;
}

export class CompressPool {
  private readonly pool: WorkerPool<BatchRequest, BatchReply>;

  constructor(readonly size: number) {
    this.pool = new WorkerPool('compress-worker', size);
  }

  /** Compresses the first `inputLength` bytes of `input` (a buffer it takes, or a file range the worker reads). */
  async compress(spec: BatchSpec, input: Uint8Array | FileRange, inputLength: number, output: Uint8Array): Promise<PooledResult> {
    const inBuf = input instanceof Uint8Array ? input.buffer as ArrayBuffer : undefined;
    const req: BatchRequest = { spec, input: inBuf ?? input as FileRange, inputLength, output: output.buffer as ArrayBuffer };
    const r = await this.pool.run(req, inBuf ? [inBuf, req.output] : [req.output]);
    return {
      input: r.input ? new Uint8Array(r.input) : undefined,
      output: new Uint8Array(r.output), outLength: r.outLength, lengths: r.lengths,
    };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

let shared: CompressPool | undefined;

/** The process-wide pool, one worker per available core. */
export function sharedCompressPool(): CompressPool {
  shared ??= new CompressPool(Math.max(1, availableParallelism()));
  return shared;
}
