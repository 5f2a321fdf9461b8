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

function startWorker(workerData: unknown): Worker {
  const url = new URL(`./apply-worker.${fromSource ? 'ts' : 'js'}`, import.meta.url);
  if (!fromSource) return new Worker(url, { workerData });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

export interface ThreadApplyOptions {
  name: string;
  onProgress?(bytes: number): void;
}

/** Same contract as applyLayer: resolves with the stats, or rejects with its ApplyError/FormatError. */
export function applyLayerInThread(input: Readable, rootDir: string, opts: ThreadApplyOptions): Promise<ApplyStats> {
  const worker = startWorker({ rootDir, name: opts.name });
  const chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let settled = false;
  const send = (m: ToWorker, transfer: ArrayBuffer[] = []): void => { if (!settled) worker.postMessage(m, transfer); };
  let pumping = Promise.resolve();
  let ended = false;
  const pump = async (): Promise<void> => {
    if (ended) return;
    try {
      const r = await chunks.next();
      if (r.done) {
        ended = true;
        send({ type: 'end' });
        return;
      }
      // A copy of its own, so transferring it cannot detach a buffer the stream still shares.
      const chunk = new Uint8Array(r.value);
      send({ type: 'data', chunk }, [chunk.buffer as ArrayBuffer]);
    } catch (err) {
      ended = true;
      send({ type: 'error', error: toThreadError(err) });
    }
  };
  const result = new Promise<ApplyStats>((resolve, reject) => {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'more') pumping = pumping.then(pump);
      else if (m.type === 'progress') {
        // A throwing progress callback aborts the layer, as it would from inside the stream.
        try { opts.onProgress?.(m.bytes); } catch (err) { reject(err as Error); }
      }
      else if (m.type === 'done') resolve(m.stats as ApplyStats);
      else reject(fromThreadError(m.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the layer applier thread exited (code ${code}) before finishing`)));
  });
  return result.finally(async () => {
    settled = true;
    input.destroy();
    await worker.terminate();
  });
}
