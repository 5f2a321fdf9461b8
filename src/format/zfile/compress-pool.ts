/**
 * A process-wide pool of worker threads compressing ZFile block batches, so a writer uses every
 * core. Workers are referenced only while they have work, so an idle pool never keeps the process
 * alive; each worker answers in the order it was asked, which keeps per-worker bookkeeping a FIFO.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BatchSpec, BatchResult } from './batch.ts';
import type { BatchReply, BatchRequest } from './compress-worker.ts';

export interface PooledResult extends BatchResult {
  /** The input buffer, handed back for reuse. */
  input: Uint8Array;
}

interface Waiter {
  resolve(r: PooledResult): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  waiting: Waiter[];
}

// Built, the worker is the .js beside this file. Running from source, Node 20 does not carry the
// parent's `--import tsx` loader into workers, so a bootstrap registers tsx before importing the .ts.
const fromSource = import.meta.url.endsWith('.ts');
const workerUrl = new URL(fromSource ? './compress-worker.ts' : './compress-worker.js', import.meta.url);

function startWorker(): Worker {
  if (!fromSource) return new Worker(workerUrl);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); })`;
  return new Worker(boot, { eval: true });
}

export class CompressPool {
  private readonly slots: Slot[] = [];

  constructor(readonly size: number) {}

  compress(spec: BatchSpec, input: Uint8Array, inputLength: number, output: Uint8Array): Promise<PooledResult> {
    const slot = this.pick();
    return new Promise<PooledResult>((resolve, reject) => {
      if (slot.waiting.length === 0) slot.worker.ref();
      slot.waiting.push({ resolve, reject });
      const req: BatchRequest = { spec, input: input.buffer as ArrayBuffer, inputLength, output: output.buffer as ArrayBuffer };
      slot.worker.postMessage(req, [req.input, req.output]);
    });
  }

  async close(): Promise<void> {
    const all = this.slots.splice(0);
    await Promise.all(all.map((s) => s.worker.terminate()));
  }

  private pick(): Slot {
    if (this.slots.length < this.size) {
      const least = this.slots.find((s) => s.waiting.length === 0);
      if (least) return least;
      return this.spawn();
    }
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.waiting.length < best.waiting.length) best = s;
    return best;
  }

  private spawn(): Slot {
    const worker = startWorker();
    const slot: Slot = { worker, waiting: [] };
    worker.unref();
    worker.on('message', (reply: BatchReply) => {
      const w = slot.waiting.shift();
      if (slot.waiting.length === 0) worker.unref();
      if (!w) return;
      if (reply.ok) {
        w.resolve({ input: new Uint8Array(reply.input), output: new Uint8Array(reply.output), outLength: reply.outLength, lengths: reply.lengths });
      } else {
        w.reject(new Error(`compression worker: ${reply.error}`));
      }
    });
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const w of slot.waiting.splice(0)) w.reject(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`compression worker exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}

let shared: CompressPool | undefined;

/** The process-wide pool, one worker per available core. */
export function sharedCompressPool(): CompressPool {
  shared ??= new CompressPool(Math.max(1, availableParallelism()));
  return shared;
}
