import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { readLayerBytes } from '../../../src/format/lsmt/read.ts';
import { createWritableLayer, openWritableLayer, type LsmtWritableLayer } from '../../../src/format/lsmt/writable.ts';
import { tempDir } from '../../helpers/env.ts';

// Small, so concurrent ops overlap often and batches mix writes and trims on the same sectors.
const VS = 64 * 1024;
const SECTORS = VS / 512;

async function readAll(layer: LsmtWritableLayer): Promise<Uint8Array> {
  const out = new Uint8Array(VS);
  await readLayerBytes((s, n, v) => layer.lookup(s, n, v), layer.data, out, 0);
  return out;
}

function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 131 + i * 7 + (i >> 9) * 3) & 0xff;
  return b;
}

type Op = { kind: 'write' | 'trim'; sector: number; count: number; seed: number };
type Round = { ops: Op[]; flush: boolean };

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('write' as const, 'write' as const, 'write' as const, 'trim' as const),
  sector: fc.integer({ min: 0, max: SECTORS - 1 }),
  count: fc.integer({ min: 1, max: 24 }),
  seed: fc.integer({ min: 0, max: 255 }),
});
const roundArb: fc.Arbitrary<Round> = fc.record({ ops: fc.array(opArb, { minLength: 1, maxLength: 40 }), flush: fc.boolean() });

test('concurrent writes and trims batch in issue order: memory, a copy taken after flush, and a reopen all match the model', async (t) => {
  const dir = await tempDir(t);
  let run = 0;
  await fc.assert(fc.asyncProperty(fc.array(roundArb, { minLength: 1, maxLength: 6 }), async (rounds) => {
    run++;
    const data = join(dir, `d${run}`);
    const index = join(dir, `i${run}`);
    const model = new Uint8Array(VS);
    const layer = await createWritableLayer(data, index, { virtualSize: VS });
    let closed = false;
    try {
      for (const [r, round] of rounds.entries()) {
        // All ops of a round are issued in one tick, none awaited: later ops must win over earlier ones.
        const acks: Promise<void>[] = [];
        for (const op of round.ops) {
          const count = Math.min(op.count, SECTORS - op.sector);
          if (op.kind === 'write') {
            const bytes = fill(count * 512, op.seed);
            acks.push(layer.write(bytes, op.sector * 512));
            model.set(bytes, op.sector * 512);
          } else {
            acks.push(layer.trim(op.sector * 512, count * 512));
            model.fill(0, op.sector * 512, (op.sector + count) * 512);
          }
        }
        if (round.flush) {
          // A flush issued behind the ops (without awaiting them) covers all of them: the files
          // copied right after it, with the layer still open, are what a crash would leave.
          await layer.flush();
          const cd = join(dir, `d${run}c${r}`);
          const ci = join(dir, `i${run}c${r}`);
          await copyFile(data, cd);
          await copyFile(index, ci);
          const copy = await openWritableLayer(cd, ci);
          try {
            assert.ok(Buffer.from(await readAll(copy)).equals(model), 'files after flush differ from the model');
          } finally {
            await copy.close();
          }
        }
        await Promise.all(acks);
        assert.ok(Buffer.from(await readAll(layer)).equals(model), 'reads after the acks differ from the model');
      }
      await layer.close();
      closed = true;
      const again = await openWritableLayer(data, index);
      try {
        assert.ok(Buffer.from(await readAll(again)).equals(model), 'reopened layer differs from the model');
      } finally {
        await again.close();
      }
    } finally {
      if (!closed) await layer.close();
    }
  }), { numRuns: 40 });
});

test('a write issued after close starts is refused; close still persists what came before', async (t) => {
  const dir = await tempDir(t);
  const layer = await createWritableLayer(join(dir, 'd'), join(dir, 'i'), { virtualSize: VS });
  const first = layer.write(fill(4096, 1), 0);
  const closing = layer.close();
  await assert.rejects(layer.write(fill(512, 2), 0), /after close/);
  await first;
  await closing;
  const again = await openWritableLayer(join(dir, 'd'), join(dir, 'i'));
  t.after(() => again.close());
  assert.ok(Buffer.from((await readAll(again)).subarray(0, 4096)).equals(fill(4096, 1)));
});

test('an index append failing fails its write, every later flush and every later write', async (t) => {
  const dir = await tempDir(t);
  const layer = await createWritableLayer(join(dir, 'd'), join(dir, 'i'), { virtualSize: VS });
  // Break the index log underneath the layer: its next append fails with EBADF.
  const indexFh = (layer as unknown as { indexFh: { close(): Promise<void> } }).indexFh;
  await indexFh.close();
  await assert.rejects(layer.write(fill(4096, 1), 0), /index append failed/);
  await assert.rejects(layer.flush(), /index log failed/);
  await assert.rejects(layer.write(fill(512, 2), 0), /index log failed/);
  await assert.rejects(layer.close(), /index log failed/);
});
