import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { DiskError } from '../../../src/errors.ts';
import { MemorySource } from '../../../src/io/memory.ts';
import { MemorySink } from '../../../src/io/sink.ts';
import { commitLayer } from '../../../src/format/lsmt/commit.ts';
import { readLayerBytes } from '../../../src/format/lsmt/read.ts';
import { openReadOnlyLayer } from '../../../src/format/lsmt/readonly.ts';
import { decodeRecords, encodeRecord, SegmentArrays } from '../../../src/format/lsmt/records.ts';
import { lookupIndex } from '../../../src/format/lsmt/read.ts';
import { createWritableLayer, openWritableLayer, type LsmtWritableLayer } from '../../../src/format/lsmt/writable.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';

const VS = 256 * 1024;

async function readAll(layer: LsmtWritableLayer, size = VS): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  await readLayerBytes((s, n, v) => layer.lookup(s, n, v), layer.data, out, 0);
  return out;
}

function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return b;
}

type Op = { kind: 'write'; sector: number; count: number; seed: number } | { kind: 'trim'; sector: number; count: number }
  | { kind: 'reopen' } | { kind: 'flush' };

const sectors = VS / 512;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), sector: fc.integer({ min: 0, max: sectors - 1 }), count: fc.integer({ min: 1, max: 64 }), seed: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('trim' as const), sector: fc.integer({ min: 0, max: sectors - 1 }), count: fc.integer({ min: 1, max: 96 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

test('writable layer vs a flat byte-array model: writes, trims, reopen; then commit reads back the same', async (t) => {
  const dir = await tempDir(t);
  let run = 0;
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), async (ops) => {
    run++;
    const data = join(dir, `d${run}`);
    const index = join(dir, `i${run}`);
    const model = new Uint8Array(VS);
    let layer = await createWritableLayer(data, index, { virtualSize: VS });
    try {
      for (const op of ops) {
        if (op.kind === 'write') {
          const count = Math.min(op.count, sectors - op.sector);
          const bytes = fill(count * 512, op.seed);
          await layer.write(bytes, op.sector * 512);
          model.set(bytes, op.sector * 512);
        } else if (op.kind === 'trim') {
          const count = Math.min(op.count, sectors - op.sector);
          await layer.trim(op.sector * 512, count * 512);
          model.fill(0, op.sector * 512, (op.sector + count) * 512);
        } else if (op.kind === 'reopen') {
          await layer.close();
          layer = await openWritableLayer(data, index);
        } else {
          await layer.flush();
        }
      }
      assert.ok(Buffer.from(await readAll(layer)).equals(model), 'writable layer reads differ from the model');
      const sink = new MemorySink();
      await commitLayer({ index: layer.snapshot(), data: layer.data, virtualSize: VS }, sink);
      const ro = await openReadOnlyLayer(new MemorySource(sink.bytes(), 'committed'), 'committed');
      const got = new Uint8Array(VS);
      await readLayerBytes((s, n, v) => lookupIndex(ro.index, s, n, v), ro.data, got, 0);
      assert.ok(Buffer.from(got).equals(model), 'committed layer reads differ from the model');
    } finally {
      await layer.close();
    }
  }), { numRuns: 30 });
});

test('alignment and range are enforced with DiskError codes', async (t) => {
  const dir = await tempDir(t);
  const layer = await createWritableLayer(join(dir, 'd'), join(dir, 'i'), { virtualSize: VS });
  t.after(() => layer.close());
  await assert.rejects(layer.write(new Uint8Array(512), 100), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL');
  await assert.rejects(layer.write(new Uint8Array(100), 0), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL');
  await assert.rejects(layer.trim(512, 513), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL');
  await assert.rejects(layer.write(new Uint8Array(1024), VS - 512), (e: unknown) => e instanceof DiskError && e.code === 'ENOSPC');
});

async function indexRecords(path: string, keepTags = false): Promise<SegmentArrays> {
  const b = await readFile(path);
  const out = new SegmentArrays();
  decodeRecords(b.subarray(4096), out, { file: path, base: 4096, keepTags });
  return out;
}

test('big writes split at 4 MiB, big trims at 16383 sectors; records carry the stacking tag', async (t) => {
  const dir = await tempDir(t);
  const layer = await createWritableLayer(join(dir, 'd'), join(dir, 'i'), { virtualSize: 64 << 20, tag: 3 });
  await layer.write(fill(9 << 20, 1), 1 << 20);
  await layer.trim(20 << 20, 20 << 20);
  await layer.close();
  const r = await indexRecords(join(dir, 'i'), true);
  assert.deepEqual([...r.length.subarray(0, r.count)], [8192, 8192, 2048, 16383, 16383, 8194]);
  assert.deepEqual([...r.moffset.subarray(0, 3)], [8, 8 + 8192, 8 + 16384]);
  assert.deepEqual([...r.zeroed.subarray(0, r.count)], [0, 0, 0, 1, 1, 1]);
  assert.ok([...r.tag.subarray(0, r.count)].every((x) => x === 3));
  assert.deepEqual([...r.moffset.subarray(3, 6)], [8 + 18432, 8 + 18432, 8 + 18432]);
  // Read-only loading of the pair ignores the on-disk tag (§2.5).
  const { openWritablePairReadOnly } = await import('../../../src/format/lsmt/readonly.ts');
  const { FileSource } = await import('../../../src/io/file.ts');
  const ro = await openWritablePairReadOnly(await FileSource.open(join(dir, 'd')), await FileSource.open(join(dir, 'i')));
  assert.ok(ro.index.count > 0 && [...ro.index.tag].every((x) => x === 0));
  await ro.close();
});

test('concurrent writes: the log replays to exactly the in-memory state', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'd');
  const index = join(dir, 'i');
  const layer = await createWritableLayer(data, index, { virtualSize: VS });
  const pending: Promise<void>[] = [];
  for (let i = 0; i < 400; i++) {
    const sector = (i * 37) % (sectors - 16);
    if (i % 9 === 0) pending.push(layer.trim(sector * 512, 4096));
    else pending.push(layer.write(fill(((i % 16) + 1) * 512, i), sector * 512));
  }
  await Promise.all(pending);
  const before = await readAll(layer);
  await layer.close();
  const again = await openWritableLayer(data, index);
  t.after(() => again.close());
  assert.ok(Buffer.from(await readAll(again)).equals(before));
});

test('crash leftovers: a torn record and a record past the data end are ignored; later writes still survive', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'd');
  const index = join(dir, 'i');
  const layer = await createWritableLayer(data, index, { virtualSize: VS });
  await layer.write(fill(8192, 5), 4096);
  await layer.trim(8192, 1024);
  await layer.flush();
  const acknowledged = await readAll(layer);
  await layer.close();
  // A record whose data never reached the data file, then half a record.
  const rec = new Uint8Array(16);
  encodeRecord(new DataView(rec.buffer), 0, 100, 8, 4000, 0, 0);
  await appendFile(index, rec);
  await appendFile(index, rec.subarray(0, 7));
  // A partly written data block at the data end (not a whole sector).
  await appendFile(data, new Uint8Array(100).fill(9));

  const reopened = await openWritableLayer(data, index);
  assert.ok(Buffer.from(await readAll(reopened)).equals(acknowledged));
  await reopened.write(fill(1024, 7), 0);
  // Grow the data file past the stale record's moffset (4000): it must not come alive.
  for (let k = 0; k < 17; k++) await reopened.write(fill(128 * 1024, 8), 128 * 1024);
  await reopened.close();
  const expect = Buffer.from(acknowledged);
  expect.set(fill(1024, 7), 0);
  expect.set(fill(128 * 1024, 8), 128 * 1024);
  const third = await openWritableLayer(data, index);
  t.after(() => third.close());
  assert.ok(Buffer.from(await readAll(third)).equals(expect), 'a write after recovery was lost');
});

test('a truncated data file (lost unflushed data) drops the records that point past it', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'd');
  const index = join(dir, 'i');
  const layer = await createWritableLayer(data, index, { virtualSize: VS });
  await layer.write(fill(4096, 1), 0);
  await layer.flush();
  await layer.write(fill(4096, 2), 0);
  await layer.close();
  await truncate(data, 4096 + 4096);
  const re = await openWritableLayer(data, index);
  t.after(() => re.close());
  const got = await readAll(re);
  assert.ok(Buffer.from(got.subarray(0, 4096)).equals(fill(4096, 1)));
});

test('a full host file system fails writes with ENOSPC (not EIO); earlier acknowledged writes still read back', async (t) => {
  if (!requireSystem(t, { root: true, commands: ['mount', 'umount'] })) return;
  const dir = await mkdtemp(join(tmpdir(), 'dadi-rw-enospc-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  assert.equal(mounted.status, 0, mounted.stderr?.toString());
  t.after(async () => {
    spawnSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  const layer = await createWritableLayer(join(dir, 'data'), join(dir, 'index'), { virtualSize: 64 << 20 });
  const block = Buffer.alloc(256 << 10, 0x5a);
  await layer.write(block, 0);
  let failure: unknown;
  for (let i = 1; i < 8 && !failure; i++) {
    try { await layer.write(block, i * block.length); } catch (err) { failure = err; }
  }
  assert.ok(failure instanceof DiskError, `expected a DiskError, got ${String(failure)}`);
  assert.equal(failure.code, 'ENOSPC');
  assert.match(failure.message, /data write failed/);
  const back = Buffer.alloc(block.length);
  await readLayerBytes((s, n, v) => layer.lookup(s, n, v), layer.data, back, 0);
  assert.ok(back.equals(block), 'the first write reads back');
  await layer.close().catch(() => {});
});
