/**
 * The behavioural suite every ByteSource and every source filter must pass, as containerd runs
 * one snapshotter test suite against every snapshotter. A case gives the bytes the source must
 * read back and a way to open it; the suite checks reads against that flat reference: random and
 * concurrent reads, short reads only at the end, the declared capabilities (each declared one
 * present and agreeing with `read`), and close.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { canPrefetch, canReadProgressive, canReadSync, type ByteSource } from '../../src/io/types.ts';
import { assertSameBytes as same } from '../helpers/bytes.ts';

export interface SourceCase {
  /** Names the implementation in the test titles. */
  name: string;
  /** What the source must read back, byte for byte. */
  expected: Uint8Array;
  /** Opens a fresh source (the suite closes it); return false from `ready` to skip for a missing prerequisite. */
  open(t: TestContext): Promise<ByteSource>;
  ready?(t: TestContext): boolean;
  /** Fewer property runs for slow sources (a registry, a cache on disk). */
  runs?: number;
}

export function sourceSuite(c: SourceCase): void {
  const open = async (t: TestContext): Promise<ByteSource | undefined> => {
    if (c.ready && !c.ready(t)) return undefined;
    const src = await c.open(t);
    t.after(() => src.close().catch(() => {}));
    return src;
  };
  const size = c.expected.length;

  test(`${c.name}: size, random reads and reads across the end match the reference bytes`, async (t) => {
    const src = await open(t);
    if (!src) return;
    assert.equal(src.size, size);
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: size }), fc.integer({ min: 0, max: 70_000 }), async (offset, length) => {
      const dst = new Uint8Array(length);
      const n = await src.read(dst, offset);
      const want = Math.max(0, Math.min(length, size - offset));
      assert.equal(n, want, `read of ${length} at ${offset} is short only where the source ends`);
      same(dst.subarray(0, n), c.expected.subarray(offset, offset + n), `read of ${length} at ${offset}`);
    }), { numRuns: c.runs ?? 60 });
    assert.equal(await src.read(new Uint8Array(16), size), 0, 'a read at the end returns 0');
  });

  test(`${c.name}: concurrent reads each get their own bytes`, async (t) => {
    const src = await open(t);
    if (!src) return;
    const reads = Array.from({ length: 24 }, (_, i) => {
      const offset = Math.floor(((i * 7919) % 97) / 97 * Math.max(1, size - 1));
      return { offset, dst: new Uint8Array(Math.min(1 + ((i * 4099) % 40_000), Math.max(1, size - offset))) };
    });
    const counts = await Promise.all(reads.map((r) => src.read(r.dst, r.offset)));
    reads.forEach((r, i) => same(r.dst.subarray(0, counts[i]), c.expected.subarray(r.offset, r.offset + counts[i]!), `concurrent read ${i}`));
  });

  test(`${c.name}: every declared capability is there and agrees with read`, async (t) => {
    const src = await open(t);
    if (!src) return;
    assert.equal(typeof src.caps.readSync, 'boolean');
    assert.equal(typeof src.caps.prefetch, 'boolean');
    assert.equal(typeof src.caps.progressive, 'boolean');
    if (canReadSync(src)) {
      assert.equal(typeof src.readSync, 'function', 'caps.readSync declares readSync');
      const dst = new Uint8Array(9000).fill(0xa5);
      const at = Math.floor(size / 3);
      const n = src.readSync(dst, 100, 8000, at);
      assert.equal(n, Math.max(0, Math.min(8000, size - at)));
      same(dst.subarray(100, 100 + n), c.expected.subarray(at, at + n), 'readSync');
      assert.ok(dst.subarray(0, 100).every((b) => b === 0xa5), 'readSync leaves the bytes before dstOffset alone');
      assert.equal(src.readSync(dst, 0, 10, size), 0, 'readSync at the end returns 0');
    }
    if (canReadProgressive(src)) {
      assert.equal(typeof src.readProgressive, 'function', 'caps.progressive declares readProgressive');
      const at = Math.floor(size / 5);
      const dst = new Uint8Array(Math.min(300_000, size - at));
      const filled: number[] = [];
      const n = await src.readProgressive(dst, at, (k) => filled.push(k));
      assert.equal(n, dst.length);
      same(dst, c.expected.subarray(at, at + n), 'readProgressive');
      assert.equal(filled[0], 0, 'an attempt starts by reporting 0 bytes');
      assert.equal(filled[filled.length - 1], n, 'the last report covers the whole read');
      for (let i = 1; i < filled.length; i++) assert.ok(filled[i]! >= filled[i - 1]!, 'reports grow within an attempt');
    }
    if (canPrefetch(src)) {
      assert.equal(typeof src.prefetch, 'function', 'caps.prefetch declares prefetch');
      await src.prefetch(0, Math.min(size, 1 << 20), 'readahead');
      await src.prefetch(size, 4096, 'trace'); // past the end: nothing to do, no error
      const dst = new Uint8Array(Math.min(size, 100_000));
      assert.equal(await src.read(dst, 0), dst.length);
      same(dst, c.expected.subarray(0, dst.length), 'read after prefetch');
    }
  });

  test(`${c.name}: closes once, cleanly`, async (t) => {
    if (c.ready && !c.ready(t)) return;
    const src = await c.open(t);
    await src.read(new Uint8Array(Math.min(size, 4096)), 0);
    await src.close();
  });
}
