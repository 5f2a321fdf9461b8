/**
 * The stack with a real writable layer on top, against a flat byte-array model: random sequences
 * of (unaligned) writes, trims, reads, flushes, concurrent writes sharing sectors, and commits
 * (the upper is compacted into a new read-only layer file, plain, ZFile or tar-wrapped ZFile, the stack reopened from files with a
 * fresh upper). Every read must equal the model.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { LayerStack } from '../../src/disk/layer-stack.ts';
import { DiskError } from '../../src/errors.ts';
import { commitToFile, type CommitFileOptions } from '../../src/format/lsmt/commit-file.ts';
import type { ReadOnlyLayer } from '../../src/format/lsmt/types.ts';
import { createWritableLayer, openWritableLayer, type LsmtWritableLayer } from '../../src/format/lsmt/writable.ts';
import { openLayer } from '../../src/format/open-layer.ts';
import { tempDir } from '../helpers/env.ts';

/** How a commit is written: plain LSMT, ZFile-compressed, or ZFile in a tar wrapper. */
type Form = 'plain' | 'lz4' | 'zstd+tar';
const FORM_OPTIONS: Record<Form, CommitFileOptions> = { plain: {}, lz4: { compress: 'lz4' }, 'zstd+tar': { compress: 'zstd', tar: true } };

type Op =
  | { op: 'write'; off: number; len: number; seed: number }
  | { op: 'trim'; off: number; len: number }
  | { op: 'read'; off: number; len: number }
  | { op: 'flush' }
  | { op: 'commit'; upperSize: 'inherit' | 'explicit'; form: Form }
  | { op: 'concurrent'; base: number; cuts: number[]; seed: number };

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 13 + (i >>> 9)) & 255 || 1;
  return b;
}

function opsArb(size: number): fc.Arbitrary<Op[]> {
  const range = fc.tuple(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: 20_000 }))
    .map(([off, len]) => ({ off, len: Math.min(len, size - off) }));
  // Mostly near the start so operations overlap each other often.
  const nearRange = fc.tuple(fc.integer({ min: 0, max: 16_384 }), fc.integer({ min: 1, max: 3000 }))
    .map(([off, len]) => ({ off, len: Math.min(len, size - off) }));
  const anyRange = fc.oneof(range, nearRange, nearRange);
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.tuple(anyRange, fc.integer({ min: 0, max: 255 })).map(([r, seed]) => ({ op: 'write' as const, ...r, seed })) },
    { weight: 2, arbitrary: anyRange.map((r) => ({ op: 'trim' as const, ...r })) },
    { weight: 3, arbitrary: anyRange.map((r) => ({ op: 'read' as const, ...r })) },
    { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom('inherit' as const, 'explicit' as const), fc.constantFrom<Form>('plain', 'lz4', 'zstd+tar'))
        .map(([upperSize, form]) => ({ op: 'commit' as const, upperSize, form })),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(fc.integer({ min: 0, max: 16_384 }), fc.uniqueArray(fc.integer({ min: 1, max: 2047 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 255 })).map(([base, cuts, seed]) => ({ op: 'concurrent' as const, base, cuts: [...cuts].sort((a, b) => a - b), seed })),
    },
  );
  return fc.array(op, { minLength: 1, maxLength: 30 });
}

class Harness {
  private lowerPaths: string[] = [];
  private upper!: LsmtWritableLayer;
  stack!: LayerStack;
  private generation = 0;
  constructor(private readonly dir: string, readonly size: number) {}

  async start(): Promise<void> {
    await this.newUpper(this.size);
    await this.reopen();
  }

  private pair(): { data: string; index: string } {
    return { data: join(this.dir, `upper${this.generation}.data`), index: join(this.dir, `upper${this.generation}.index`) };
  }

  private async newUpper(virtualSize: number): Promise<void> {
    this.generation++;
    const p = this.pair();
    const layer = await createWritableLayer(p.data, p.index, { virtualSize, tag: this.lowerPaths.length });
    await layer.close();
  }

  /** Opens every layer from its files, as a restarted server would. */
  private async reopen(): Promise<void> {
    const lowers: ReadOnlyLayer[] = [];
    for (const p of this.lowerPaths) lowers.push(await openLayer(p));
    const p = this.pair();
    this.upper = await openWritableLayer(p.data, p.index, { tag: lowers.length });
    this.stack = await LayerStack.open({ lowers, upper: this.upper });
  }

  async commit(upperSize: 'inherit' | 'explicit', form: Form): Promise<void> {
    await this.stack.flush();
    const path = join(this.dir, `layer${this.lowerPaths.length}.${form}`);
    await commitToFile({ index: this.upper.snapshot(), data: this.upper.data, virtualSize: this.size }, path, FORM_OPTIONS[form]);
    await this.stack.close();
    this.lowerPaths.push(path);
    await this.newUpper(upperSize === 'inherit' ? 0 : this.size);
    await this.reopen();
  }
}

async function check(stack: LayerStack, model: Uint8Array, off: number, len: number): Promise<void> {
  const got = new Uint8Array(len);
  await stack.read(got, off);
  if (!Buffer.from(got).equals(model.subarray(off, off + len))) {
    const i = got.findIndex((b, k) => b !== model[off + k]);
    assert.fail(`read ${off}+${len}: first difference at byte ${off + i}: got ${got[i]}, model ${model[off + i]}`);
  }
}

test('random writes, trims, flushes and commits read back like a flat byte array', async (t) => {
  const dir = await tempDir(t);
  let run = 0;
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(1 << 20, (2 << 20) + 1536).chain((size) => fc.tuple(fc.constant(size), opsArb(size))),
    async ([size, ops]) => {
      const runDir = join(dir, `run${run++}`);
      await mkdir(runDir);
      const h = new Harness(runDir, size);
      await h.start();
      const model = new Uint8Array(size);
      try {
        for (const o of ops) {
          switch (o.op) {
            case 'write': {
              const b = pattern(o.len, o.seed);
              await h.stack.write(b, o.off);
              model.set(b, o.off);
              break;
            }
            case 'trim':
              await h.stack.trim(o.off, o.len);
              model.fill(0, o.off, o.off + o.len);
              break;
            case 'read':
              await check(h.stack, model, o.off, o.len);
              break;
            case 'flush':
              await h.stack.flush();
              break;
            case 'commit':
              await h.commit(o.upperSize, o.form);
              assert.equal(h.stack.size, size);
              break;
            case 'concurrent': {
              // Disjoint byte ranges that share sectors, written at once: each partial-sector
              // read-modify-write must see the others' bytes, or one write would undo another.
              const bounds = [0, ...o.cuts, 2048].map((c) => o.base + c);
              const writes: Promise<void>[] = [];
              for (let i = 0; i + 1 < bounds.length; i++) {
                const b = pattern(bounds[i + 1]! - bounds[i]!, o.seed + i * 41);
                writes.push(h.stack.write(b, bounds[i]!));
                model.set(b, bounds[i]!);
              }
              await Promise.all(writes);
              break;
            }
          }
        }
        await check(h.stack, model, 0, size);
        const runs = await h.stack.extents(0, size);
        for (const r of runs) {
          if (r.zero) assert.ok(model.subarray(r.offset, r.offset + r.length).every((b) => b === 0), `run ${r.offset}+${r.length} is reported zero`);
        }
        // Everything survives closing and reopening from the files.
        await h.commit('inherit', 'plain');
        await check(h.stack, model, 0, size);
      } finally {
        await h.stack.close();
      }
    }), { numRuns: 25 });
});

test('writes past the end fail with ENOSPC, trims and reads past it with EINVAL', async (t) => {
  const dir = await tempDir(t);
  const h = new Harness(dir, 64 << 10);
  await h.start();
  t.after(() => h.stack.close());
  const code = (c: string) => (e: unknown) => e instanceof DiskError && e.code === c;
  await assert.rejects(h.stack.write(new Uint8Array(1024), (64 << 10) - 512), code('ENOSPC'));
  await assert.rejects(h.stack.write(new Uint8Array(1), 64 << 10), code('ENOSPC'));
  await assert.rejects(h.stack.trim((64 << 10) - 100, 200), code('EINVAL'));
  await assert.rejects(h.stack.read(new Uint8Array(10), (64 << 10) - 5), code('EINVAL'));
  await h.stack.write(new Uint8Array(3).fill(9), (64 << 10) - 3);
  const tail = new Uint8Array(4);
  await h.stack.read(tail, (64 << 10) - 4);
  assert.deepEqual([...tail], [0, 9, 9, 9]);
});
