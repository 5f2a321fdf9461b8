/**
 * Worker side of ApplyThread. One layer at a time: `start` names the root, then the layer's bytes
 * arrive one batch per request (so the parent never reads ahead of the applier by more than the
 * stream's buffer), and applyLayer runs here with its synchronous file-system calls blocking only
 * this thread. The thread outlives a layer, so its start-up is paid once per conversion.
 */
import { Readable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import { applyLayer } from '../apply/index.ts';
import { fromThreadError, toThreadError, type ThreadError } from './apply-errors.ts';

export type ToWorker =
  | { type: 'start'; rootDir: string; name: string }
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' }
  | { type: 'error'; error: ThreadError };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'more' }
  | { type: 'progress'; bytes: number }
  | { type: 'done'; stats: unknown }
  | { type: 'failed'; error: ThreadError };

const port = parentPort!;
const send = (m: FromWorker): void => port.postMessage(m);
let input: Readable | undefined;

function start(rootDir: string, name: string): void {
  const layer = new Readable({
    highWaterMark: 1 << 20,
    read() { send({ type: 'more' }); },
  });
  input = layer;
  applyLayer(layer, rootDir, { name, onProgress: (bytes) => send({ type: 'progress', bytes }) }).then(
    (stats) => send({ type: 'done', stats }),
    (err: unknown) => send({ type: 'failed', error: toThreadError(err) }),
  ).finally(() => { if (input === layer) input = undefined; });
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'start') start(m.rootDir, m.name);
  else if (m.type === 'data') input?.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
  else if (m.type === 'end') input?.push(null);
  else input?.destroy(fromThreadError(m.error));
});
send({ type: 'ready' });
