/**
 * applyLayer on a worker thread. The converter serves the mounted image from this process, and
 * the kernel writes the mount's dirty pages back through that server: a write blocked in
 * dirty-page throttling must never hold the thread (or the libuv pool threads) the server runs
 * on. The applier's calls are synchronous, so on its own thread they block only that thread.
 */
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { ApplyStats } from '../apply/index.ts';
import { fromThreadError, toThreadError } from './apply-errors.ts';
import type { FromWorker, ToWorker } from './apply-worker.ts';

// Built, the worker is the .js beside this file. Running from source, Node 20 does not carry the
// parent's `--import tsx` loader into workers, so a bootstrap registers tsx before importing the .ts.
const fromSource = import.meta.url.endsWith('.ts');

function startWorker(): Worker {
  const url = new URL(`./apply-worker.${fromSource ? 'ts' : 'js'}`, import.meta.url);
  if (!fromSource) return new Worker(url);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true });
}

/** Fewer, larger messages: the source's 64 KiB reads are sent on in batches of about this size. */
const BATCH_BYTES = 1 << 20;

export interface ThreadApplyOptions {
  name: string;
  onProgress?(bytes: number): void;
}

/**
 * A worker thread for applying layers, one at a time. Create it early (it loads its modules while
 * the image is being mounted), call apply() per layer, close() at the end. A failed layer costs
 * the thread (it may still be busy); the next apply() starts a fresh one.
 */
export class ApplyThread {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private busy = false;

  constructor() {
    this.spawn();
  }

  private spawn(): void {
    const worker = startWorker();
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromWorker): void => { if (m.type === 'ready') { cleanup(); resolve(); } };
      const onError = (err: Error): void => { cleanup(); reject(err); };
      const onExit = (code: number): void => { cleanup(); reject(new Error(`the layer applier thread exited (code ${code}) while starting`)); };
      const cleanup = (): void => { worker.off('message', onMessage).off('error', onError).off('exit', onExit); };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
    this.ready.catch(() => {}); // surfaces at the next apply()
    // A thread that fails while idle (between layers) is forgotten, so the next apply() starts a
    // fresh one instead of posting to a dead thread; listening also keeps its error from being
    // an uncaught exception of the whole conversion.
    const forget = (): void => {
      if (this.worker === worker) { this.worker = undefined; this.ready = undefined; }
    };
    worker.on('error', forget).on('exit', forget);
    worker.unref();
  }

  /** Same contract as applyLayer: resolves with the stats, or rejects with its ApplyError/FormatError. */
  async apply(input: Readable, rootDir: string, opts: ThreadApplyOptions): Promise<ApplyStats> {
    if (this.busy) throw new Error('ApplyThread applies one layer at a time');
    this.busy = true;
    if (!this.worker) this.spawn();
    const worker = this.worker!;
    let ok = false;
    try {
      worker.ref(); // before waiting for it to start: an unref'd worker keeps nothing alive
      await this.ready;
      const stats = await this.run(worker, input, rootDir, opts);
      ok = true;
      return stats;
    } finally {
      input.destroy();
      this.busy = false;
      if (ok) worker.unref();
      else await this.close();
    }
  }

  private run(worker: Worker, input: Readable, rootDir: string, opts: ThreadApplyOptions): Promise<ApplyStats> {
    const chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let settled = false;
    const send = (m: ToWorker, transfer: ArrayBuffer[] = []): void => { if (!settled) worker.postMessage(m, transfer); };
    let ended = false;
    const pump = async (): Promise<void> => {
      if (ended || settled) return;
      try {
        const parts: Buffer[] = [];
        let size = 0;
        while (size < BATCH_BYTES) {
          const r = await chunks.next();
          if (r.done) { ended = true; break; }
          parts.push(r.value);
          size += r.value.length;
        }
        if (size > 0) {
          // A copy of its own, so transferring it cannot detach a buffer the stream still shares.
          const chunk = new Uint8Array(size);
          let at = 0;
          for (const p of parts) { chunk.set(p, at); at += p.length; }
          send({ type: 'data', chunk }, [chunk.buffer]);
        }
        if (ended) send({ type: 'end' });
      } catch (err) {
        ended = true;
        send({ type: 'error', error: toThreadError(err) });
      }
    };
    let pumping = Promise.resolve();
    let aborted: Error | undefined;
    return new Promise<ApplyStats>((resolve, reject) => {
      const finish = (fn: () => void): void => {
        settled = true;
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        fn();
      };
      const onMessage = (m: FromWorker): void => {
        if (m.type === 'more') pumping = pumping.then(pump);
        else if (m.type === 'progress') {
          if (aborted) return;
          // A throwing progress callback aborts the layer, as it would from inside the stream:
          // the thread's input fails, and the applier closes its open file before answering
          // (terminating it mid-file would leave a descriptor holding the mount busy).
          try {
            opts.onProgress?.(m.bytes);
          } catch (err) {
            aborted = err as Error;
            ended = true;
            send({ type: 'error', error: toThreadError(err) });
          }
        } else if (m.type === 'done') finish(() => (aborted ? reject(aborted) : resolve(m.stats as ApplyStats)));
        else if (m.type === 'failed') finish(() => reject(aborted ?? fromThreadError(m.error)));
      };
      const onError = (err: Error): void => finish(() => reject(err));
      const onExit = (code: number): void => finish(() => reject(new Error(`the layer applier thread exited (code ${code}) before finishing`)));
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      send({ type: 'start', rootDir, name: opts.name });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    if (worker) await worker.terminate();
  }
}
