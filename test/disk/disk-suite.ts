/**
 * The behavioural suite every Disk and every disk filter must pass. A case gives the bytes the
 * disk holds when opened (a flat reference model) and a way to open it; the suite checks reads
 * against the model, random write/trim/read/flush sequences on writable disks (the model
 * follows), refusals on read-only ones, and the declared capabilities: each declared one present
 * and truthful (extents that read as zeros are zeros, readMapped equals read plus extents),
 * write-only ones (trim, zero, FUA) absent from read-only disks.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { canReadMapped, hasExtents, type Disk, type DiskExtent } from '../../src/io/types.ts';
import { assertSameBytes as same } from '../helpers/bytes.ts';

export interface DiskCase {
  name: string;
  /** What the disk reads as when opened (its length is the disk size). */
  expected(): Uint8Array;
  open(t: TestContext): Promise<Disk>;
  runs?: number;
}

function checkExtents(extents: DiskExtent[], offset: number, length: number, bytes: Uint8Array, what: string): void {
  let at = offset;
  for (const e of extents) {
    assert.equal(e.offset, at, `${what}: runs are contiguous from the start of the range`);
    assert.ok(e.length > 0, `${what}: no empty run`);
    if (e.hole) assert.ok(e.zero, `${what}: a hole reads as zeros`);
    if (e.zero) {
      const s = Math.max(e.offset, offset) - offset;
      const t = Math.min(e.offset + e.length, offset + length) - offset;
      if (t > s) assert.ok(bytes.subarray(s, t).every((b) => b === 0), `${what}: a zero run at ${e.offset}+${e.length} reads as zeros`);
    }
    at = e.offset + e.length;
  }
}

const ALIGNED = 512;

export function diskSuite(c: DiskCase): void {
  const open = async (t: TestContext): Promise<Disk> => {
    const disk = await c.open(t);
    t.after(() => disk.close().catch(() => {}));
    return disk;
  };

  test(`${c.name}: reads equal the model, aligned or not`, async (t) => {
    const model = c.expected();
    const disk = await open(t);
    assert.equal(disk.size, model.length);
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: model.length - 1 }), fc.integer({ min: 1, max: 200_000 }), async (offset, len) => {
      const length = Math.min(len, model.length - offset);
      const dst = new Uint8Array(length);
      await disk.read(dst, offset);
      same(dst, model.subarray(offset, offset + length), `read of ${length} at ${offset}`);
    }), { numRuns: c.runs ?? 50 });
  });

  test(`${c.name}: declared capabilities are present and truthful`, async (t) => {
    const model = c.expected();
    const disk = await open(t);
    if (!disk.writable) {
      assert.deepEqual([disk.caps.trim, disk.caps.zero, disk.caps.fua], [false, false, false], 'a read-only disk declares no trim, zero or FUA');
    }
    const ranges = [[0, Math.min(model.length, 1 << 20)], [Math.floor(model.length / 2), Math.min(300_000, model.length - Math.floor(model.length / 2))]];
    for (const [offset, length] of ranges as Array<[number, number]>) {
      if (hasExtents(disk)) {
        assert.equal(typeof disk.extents, 'function');
        checkExtents(await disk.extents(offset, length), offset, length, model.subarray(offset, offset + length), `extents(${offset}, ${length})`);
      }
      if (canReadMapped(disk)) {
        assert.equal(typeof disk.readMapped, 'function');
        const dst = new Uint8Array(length);
        const extents = await disk.readMapped(dst, offset);
        same(dst, model.subarray(offset, offset + length), `readMapped at ${offset}`);
        checkExtents(extents, offset, length, dst, `readMapped(${offset}, ${length})`);
      }
    }
  });

  test(`${c.name}: writes, trims and flushes follow the model; a read-only disk refuses them`, async (t) => {
    const model = Uint8Array.from(c.expected());
    const disk = await open(t);
    const size = model.length;
    if (!disk.writable) {
      await assert.rejects(disk.write(new Uint8Array(ALIGNED).fill(1), 0), (e: Error & { code?: string }) => e.code === 'EROFS' || /read-only|EROFS/.test(e.message));
      const dst = new Uint8Array(ALIGNED);
      await disk.read(dst, 0);
      same(dst, model.subarray(0, ALIGNED), 'unchanged after a refused write');
      return;
    }
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), sector: fc.integer({ min: 0, max: size / ALIGNED - 1 }), sectors: fc.integer({ min: 1, max: 64 }), seed: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('trim' as const), sector: fc.integer({ min: 0, max: size / ALIGNED - 1 }), sectors: fc.integer({ min: 1, max: 64 }) }),
      fc.record({ kind: fc.constant('read' as const), offset: fc.integer({ min: 0, max: size - 1 }), length: fc.integer({ min: 1, max: 70_000 }) }),
      fc.constant({ kind: 'flush' as const }),
    );
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
      for (const o of ops) {
        if (o.kind === 'write') {
          const offset = o.sector * ALIGNED;
          const len = Math.min(o.sectors * ALIGNED, size - offset);
          const data = Uint8Array.from({ length: len }, (_, i) => (o.seed + i * 31) & 255);
          await disk.write(data, offset);
          model.set(data, offset);
        } else if (o.kind === 'trim') {
          if (!disk.caps.trim) continue;
          const offset = o.sector * ALIGNED;
          const len = Math.min(o.sectors * ALIGNED, size - offset);
          await disk.trim(offset, len);
          model.fill(0, offset, offset + len);
        } else if (o.kind === 'read') {
          const length = Math.min(o.length, size - o.offset);
          const dst = new Uint8Array(length);
          await disk.read(dst, o.offset);
          same(dst, model.subarray(o.offset, o.offset + length), `read of ${length} at ${o.offset}`);
        } else {
          await disk.flush();
        }
      }
    }), { numRuns: c.runs ?? 25 });
  });
}
