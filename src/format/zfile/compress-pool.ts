/** Batch compression on worker threads (see compress-worker.ts), one worker per core by default. */
import { availableParallelism } from 'node:os';
import type { BatchSpec, BatchResult } from './batch.ts';
import type { BatchReply, BatchRequest } from './compress-worker.ts';
import { WorkerPool } from './worker-pool.ts';

export interface PooledResult extends BatchResult {
  /** The input buffer, handed back for reuse. */
  input: Uint8Array;
}

export class CompressPool {
  private readonly pool: WorkerPool<BatchRequest, BatchReply>;

  constructor(readonly size: number) {
    this.pool = new WorkerPool('compress-worker', size);
  }

  async compress(spec: BatchSpec, input: Uint8Array, inputLength: number, output: Uint8Array): Promise<PooledResult> {
    const req: BatchRequest = { spec, input: input.buffer as ArrayBuffer, inputLength, output: output.buffer as ArrayBuffer };
    const r = await this.pool.run(req, [req.input, req.output]);
    return { input: new Uint8Array(r.input), output: new Uint8Array(r.output), outLength: r.outLength, lengths: r.lengths };
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
