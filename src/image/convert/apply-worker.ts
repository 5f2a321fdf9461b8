/**
 * Worker side of applyLayerInThread: the layer's bytes arrive from the parent one chunk per
 * request (so the parent never reads ahead of the applier by more than the stream's buffer),
 * and applyLayer runs here with its synchronous file-system calls blocking only this thread.
 */
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { applyLayer } from '../apply/index.ts';
import { fromThreadError, toThreadError, type ThreadError } from './apply-errors.ts';

export type ToWorker = { type: 'data'; chunk: Uint8Array } | { type: 'end' } | { type: 'error'; error: ThreadError };
export type FromWorker =
  | { type: 'more' }
  | { type: 'progress'; bytes: number }
  | { type: 'done'; stats: unknown }
  | { type: 'failed'; error: ThreadError };

const port = parentPort!;
const { rootDir, name } = workerData as { rootDir: string; name: string };
const send = (m: FromWorker): void => port.postMessage(m);

const input = new Readable({
  highWaterMark: 1 << 20,
  read() { send({ type: 'more' }); },
});
port.on('message', (m: ToWorker) => {
  if (m.type === 'data') input.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
  else if (m.type === 'end') input.push(null);
  else input.destroy(fromThreadError(m.error));
});

applyLayer(input, rootDir, { name, onProgress: (bytes) => send({ type: 'progress', bytes }) }).then(
  (stats) => send({ type: 'done', stats }),
  (err: unknown) => send({ type: 'failed', error: toThreadError(err) }),
);
