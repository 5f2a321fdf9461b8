/**
 * Layers are applied streaming: a file far larger than the memory the applier may use goes
 * through with the process's memory staying flat, and its bytes arrive intact.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { rawHeader } from './tar-build.ts';

const SIZE = 192 * 1024 * 1024;
const CHUNK = 1024 * 1024;

/** A tar of one SIZE-byte file, generated as it is read; returns the content hash too. */
function hugeLayer(): { stream: Readable; sha256: () => string } {
  const hash = createHash('sha256');
  async function* gen() {
    yield rawHeader({ name: 'huge.bin', flag: '0', size: SIZE });
    for (let i = 0; i < SIZE / CHUNK; i++) {
      const chunk = Buffer.alloc(CHUNK, i & 0xff);
      chunk.writeUInt32LE(i, 0);
      hash.update(chunk);
      yield chunk;
    }
    yield Buffer.alloc(1024);
  }
  return { stream: Readable.from(gen(), { objectMode: false, highWaterMark: CHUNK }), sha256: () => hash.digest('hex') };
}

test('a file much larger than the memory allowed is streamed, not buffered', async (t) => {
  if (!requireSystem(t, { root: true })) return;
  const root = await tempDir(t);
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
  const layer = hugeLayer();
  try {
    const stats = await applyLayer(layer.stream, root);
    assert.equal(stats.bytesWritten, SIZE);
  } finally {
    clearInterval(timer);
  }
  assert.ok(peak - before < 64 * 1024 * 1024, `memory grew by ${((peak - before) / 1048576).toFixed(0)} MiB while applying a ${SIZE / 1048576} MiB file`);
  const h = createHash('sha256');
  for await (const c of createReadStream(join(root, 'huge.bin'))) h.update(c as Buffer);
  assert.equal(h.digest('hex'), layer.sha256());
});
