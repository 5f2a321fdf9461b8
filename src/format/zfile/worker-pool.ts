/**
 * A small pool of worker threads running one worker script, used to spread ZFile compression
 * and bulk decompression over every core. Workers are referenced only while they have work, so
 * an idle pool never keeps the process alive; each worker answers in the order it was asked,
 * which keeps per-worker bookkeeping a FIFO.
 */
import { Worker } from 'node:worker_threads';
import { FormatError } from '../../errors.ts';

interface Waiter {
  resolve(r: unknown): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  waiting: Waiter[];
}

/** What a pool worker posts back: a result, or the error it hit (buffers are handed back either way). */
export type WorkerReply<T> =
  | { ok: true; result: T }
  | ({ ok: false; result: T } & ReplyError);

interface ReplyError {
  /** The message alone, so a CLI user sees one line, not the worker's stack. */
  error: string;
  /** An errno-style code (EBADF, ENOSPC, ...), kept so callers can still tell failures apart. */
  code?: string;
  /** The worker's stack, kept for debugging as the rethrown error's stack. */
  stack?: string;
  format?: { file: string; offset: number; problem: string };
}

/** The failure part of a reply for `err`, keeping a FormatError's fields so it survives the thread hop. */
export function replyError(err: unknown): ReplyError {
  if (err instanceof FormatError) return { error: err.message, format: { file: err.file, offset: err.offset, problem: err.problem } };
  if (!(err instanceof Error)) return { error: String(err) };
  const code = (err as NodeJS.ErrnoException).code;
  return { error: err.message, ...(typeof code === 'string' ? { code } : {}), ...(err.stack ? { stack: err.stack } : {}) };
}

/** The error a failed reply stands for, rebuilt on this side of the thread hop. */
function replyFailure(reply: ReplyError): Error {
  if (reply.format) return new FormatError(reply.format.file, reply.format.offset, reply.format.problem);
  const err: NodeJS.ErrnoException = new Error(reply.error);
  if (reply.code) err.code = reply.code;
  if (reply.stack) err.stack = reply.stack;
  return err;
}

// Built, a worker is the .js beside this file. Running from source, Node 20 does not carry the
// parent's `--import tsx` loader into workers, so a bootstrap registers tsx before importing the .ts.
const fromSource = import.meta.url.endsWith('.ts');

function startWorker(script: string): Worker {
  const url = new URL(`./${script}.${fromSource ? 'ts' : 'js'}`, import.meta.url);
  if (!fromSource) return new Worker(url);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true });
}

export class WorkerPool<Req, Res> {
  private readonly slots: Slot[] = [];

  constructor(private readonly script: string, readonly size: number) {}

  run(req: Req, transfer: ArrayBuffer[]): Promise<Res> {
    const slot = this.pick();
    return new Promise<Res>((resolve, reject) => {
      if (slot.waiting.length === 0) slot.worker.ref();
      slot.waiting.push({ resolve: resolve as (r: unknown) => void, reject });
      slot.worker.postMessage(req, transfer);
    });
  }

  async close(): Promise<void> {
    const all = this.slots.splice(0);
    // An idle worker is unreferenced, and terminating it does not hold the event loop open: the
    // process could exit with close() never settling, so reference each until it has gone.
    await Promise.all(all.map((s) => {
      s.worker.ref();
      return s.worker.terminate();
    }));
  }

  private pick(): Slot {
    const idle = this.slots.find((s) => s.waiting.length === 0);
    if (idle) return idle;
    if (this.slots.length < this.size) return this.spawn();
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.waiting.length < best.waiting.length) best = s;
    return best;
  }

  private spawn(): Slot {
    const worker = startWorker(this.script);
    const slot: Slot = { worker, waiting: [] };
    worker.unref();
    worker.on('message', (reply: WorkerReply<Res>) => {
      const w = slot.waiting.shift();
      if (slot.waiting.length === 0) worker.unref();
      if (!w) return;
      if (reply.ok) w.resolve(reply.result);
      else w.reject(replyFailure(reply));
    });
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const w of slot.waiting.splice(0)) w.reject(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`${this.script} worker exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}
