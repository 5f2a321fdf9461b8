import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { DiskError } from '../../src/errors.ts';
import { chunkDigests } from '../../src/format/tar/digest-table.ts';
import { MemorySource } from '../../src/io/memory.ts';
import type { Refetchable } from '../../src/io/refetch.ts';
import { SourceFilter } from '../../src/io/filter.ts';
import { chunkWindow, VerifiedSource } from '../../src/io/verify.ts';

const CHUNK = 4096;

function blobWithTable(size: number, tailLen = 2048): { blob: Buffer; covered: number; digests: Uint8Array } {
  const blob = randomBytes(size + tailLen);
  return { blob, covered: size, digests: chunkDigests(blob.subarray(0, size), CHUNK) };
}

/** Flips one byte of every read that covers `at` (a lying upstream), `times` times. */
class Flipping extends SourceFilter {
  reads = 0;
  constructor(next: MemorySource, private readonly at: number, public times = Infinity) { super(next); }
  override async read(dst: Uint8Array, offset: number): Promise<number> {
    const n = await this.next.read(dst, offset);
    this.reads++;
    if (this.times > 0 && this.at >= offset && this.at < offset + n) { dst[this.at - offset]! ^= 0x01; this.times--; }
    return n;
  }
}

test('chunk expansion: the window is whole chunks, covers the range, and ends at `covered` (property)', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 22 }), fc.constantFrom(4096, 65536), fc.nat(), fc.nat(), (covered, chunk, a, b) => {
    const offset = a % covered;
    const end = offset + 1 + (b % (covered - offset));
    const w = chunkWindow(offset, end, chunk, covered);
    assert.equal(w.start % chunk, 0);
    assert.ok(w.start <= offset && w.stop >= end);
    assert.ok(w.stop === covered || w.stop % chunk === 0);
    assert.ok(w.start + chunk > offset, 'no chunk before the one holding offset');
    assert.ok(w.stop - chunk < end || w.stop === covered, 'no chunk after the one holding end-1');
    assert.equal(w.last - w.first + 1, Math.ceil((w.stop - w.start) / chunk));
  }), { numRuns: 2000 });
});

test('a verified source returns exactly the blob for any read (property)', async () => {
  const { blob, covered, digests } = blobWithTable(100_000);
  const src = new VerifiedSource(new MemorySource(blob), { chunkSize: CHUNK, covered, digests, tail: blob.subarray(covered) }, 'L');
  await fc.assert(fc.asyncProperty(fc.nat({ max: blob.length + 10 }), fc.integer({ min: 0, max: 40_000 }), async (offset, len) => {
    const dst = Buffer.alloc(len);
    const n = await src.read(dst, offset);
    const want = blob.subarray(offset, offset + len);
    assert.equal(n, want.length);
    assert.deepEqual(dst.subarray(0, n), want);
  }), { numRuns: 300 });
  assert.equal(src.counters.mismatches, 0);
});

test('a flipped byte fails the read with EIO naming layer, chunk and upstream; other chunks still read', async () => {
  const { blob, covered, digests } = blobWithTable(100_000);
  const bad = 5 * CHUNK + 100;
  const src = new VerifiedSource(new Flipping(new MemorySource(blob, 'http://mirror/blob'), bad), { chunkSize: CHUNK, covered, digests, tail: blob.subarray(covered) }, 'layer 0 (sha256:x)');
  await assert.rejects(src.read(Buffer.alloc(10), bad - 3), (e: unknown) =>
    e instanceof DiskError && e.code === 'EIO' && /layer 0 \(sha256:x\): chunk 5 .*from http:\/\/mirror\/blob/.test(e.message));
  const ok = Buffer.alloc(CHUNK);
  assert.equal(await src.read(ok, 6 * CHUNK), CHUNK);
  assert.deepEqual(ok, blob.subarray(6 * CHUNK, 7 * CHUNK));
  assert.equal(src.counters.failures, 1);
});

test('a mismatch is refetched once: through refetch() when the source offers it, else by reading again', async () => {
  const { blob, covered, digests } = blobWithTable(50_000);
  const bad = 2 * CHUNK + 1;
  // Once-flipping upstream without refetch: the second read is good.
  const once = new Flipping(new MemorySource(blob), bad, 1);
  const a = new VerifiedSource(once, { chunkSize: CHUNK, covered, digests, tail: blob.subarray(covered) }, 'L');
  const got = Buffer.alloc(3 * CHUNK);
  await a.read(got, 0);
  assert.deepEqual(got, blob.subarray(0, 3 * CHUNK));
  assert.equal(a.counters.recovered, 1);
  // An always-flipping primary with a good second upstream behind refetch().
  const reasons: string[] = [];
  const primary = new Flipping(new MemorySource(blob), bad);
  const multi = Object.assign(primary, {
    refetch: async (dst: Uint8Array, offset: number, reason: string) => { reasons.push(reason); return new MemorySource(blob).read(dst, offset); },
  }) as Flipping & Refetchable;
  const b = new VerifiedSource(multi, { chunkSize: CHUNK, covered, digests, tail: blob.subarray(covered) }, 'L');
  const got2 = Buffer.alloc(100);
  await b.read(got2, bad - 50);
  assert.deepEqual(got2, blob.subarray(bad - 50, bad + 50));
  assert.equal(reasons.length, 1);
  assert.match(reasons[0]!, /chunk 2/);
});
