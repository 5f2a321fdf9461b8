/**
 * Properties of the per-blob k-ary tree over random member lists, fanouts and blobs (fast-check):
 * one parent per member, no cycles, depth ⌈log_k⌉, a down member's children re-attach one level
 * up, and every host computes the same tree whatever the order of its member list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BlobTree, parseMembers, ROOT } from '../../src/p2p/topology.ts';

const member = fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1024, max: 65535 }))
  .map(([a, b, p]) => `10.0.${a}.${b}:${p}`);
const members = fc.uniqueArray(member, { minLength: 1, maxLength: 300 });
const blob = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((h) => `sha256:${Buffer.from(h).toString('hex')}`);
const fanout = fc.integer({ min: 1, max: 8 });

/** ⌈log_k(n(k-1)+1)⌉ levels hold n members in a complete k-ary heap (n levels when k is 1). */
function levels(n: number, k: number): number {
  if (k === 1) return n;
  let cap = 0; let l = 0;
  while (cap < n) { cap += k ** l; l++; }
  return l;
}

test('every member has one parent, earlier in the order (no cycles), reaching the root within the height', () => {
  fc.assert(fc.property(members, blob, fanout, (ms, b, k) => {
    const tree = new BlobTree(b, ms, k);
    assert.equal(tree.order.length, ms.length);
    assert.equal(tree.height, levels(ms.length, k));
    let roots = 0;
    const childCount = new Map<string, number>();
    for (const m of ms) {
      const chain = tree.ancestors(m);
      assert.equal(chain[chain.length - 1], ROOT);
      assert.equal(new Set(chain).size, chain.length, 'an ancestor chain never repeats (no cycle)');
      assert.ok(!chain.includes(m));
      assert.equal(chain.length, tree.depth(m));
      assert.ok(tree.depth(m) <= tree.height);
      const parent = tree.parentOf(m);
      if (parent === ROOT) roots++;
      else {
        assert.ok(tree.position(parent) < tree.position(m));
        assert.ok(tree.children(parent).includes(m));
        childCount.set(parent, (childCount.get(parent) ?? 0) + 1);
      }
    }
    assert.equal(roots, 1, 'one member fetches from the root');
    for (const n of childCount.values()) assert.ok(n <= k, `at most ${k} children`);
  }), { numRuns: 200 });
});

test('a down member is skipped: its children fetch from its parent, one level up (and on up to the root)', () => {
  fc.assert(fc.property(members.filter((ms) => ms.length >= 2), blob, fanout, fc.nat(), fc.nat(), (ms, b, k, i, j) => {
    const tree = new BlobTree(b, ms, k);
    const dead = tree.order[i % ms.length]!;
    const isDown = (m: string): boolean => m === dead;
    const up = tree.parentOf(dead);
    for (const c of tree.children(dead)) assert.equal(tree.parentOf(c, isDown), up);
    for (const m of ms) {
      if (m === dead || tree.children(dead).includes(m)) continue;
      assert.equal(tree.parentOf(m, isDown), tree.parentOf(m), 'nobody else moves');
    }
    // Two dead generations: the grandchildren go up two levels.
    const second = tree.order[j % ms.length]!;
    const bothDown = (m: string): boolean => m === dead || m === second;
    for (const m of ms) {
      const p = tree.parentOf(m, bothDown);
      assert.ok(p === ROOT || !bothDown(p));
      assert.ok(p === ROOT || tree.ancestors(m).includes(p));
    }
  }), { numRuns: 200 });
});

test('the tree depends on the members, not the order they are listed in; blobs get different trees', () => {
  fc.assert(fc.property(members, blob, fanout, fc.integer(), (ms, b, k, seed) => {
    const shuffled = [...ms].sort((x, y) => ((x.length * 31 + seed) % 7) - ((y.length * 31 + seed) % 7) || (x < y ? 1 : -1));
    assert.deepEqual(new BlobTree(b, shuffled, k).order, new BlobTree(b, ms, k).order);
  }), { numRuns: 100 });
  const ms = Array.from({ length: 100 }, (_, i) => `10.1.0.${i}:7000`);
  const tops = new Set(Array.from({ length: 50 }, (_, i) => new BlobTree(`sha256:${String(i).padStart(64, '0')}`, ms, 2).order[0]));
  assert.ok(tops.size > 20, `50 blobs have ${tops.size} different top members`);
});

test('removing a member from the list keeps the relative order of the others (rendezvous hashing)', () => {
  fc.assert(fc.property(members.filter((ms) => ms.length >= 2), blob, fc.nat(), (ms, b, i) => {
    const gone = ms[i % ms.length]!;
    const before = new BlobTree(b, ms, 2).order.filter((m) => m !== gone);
    assert.deepEqual(new BlobTree(b, ms.filter((m) => m !== gone), 2).order, before);
  }), { numRuns: 100 });
});

test('peer lists: lines, commas, comments; bad entries are named; a non-member is refused', () => {
  assert.deepEqual(parseMembers('10.0.0.1:7000, 10.0.0.2:7000\n# comment\n\nhost-3.dc:7000 # third\n10.0.0.1:7000\n'),
    ['10.0.0.1:7000', '10.0.0.2:7000', 'host-3.dc:7000']);
  assert.throws(() => parseMembers('10.0.0.1:7000\n10.0.0.2\n', 'peers.txt'), /peers.txt line 2: "10.0.0.2" is not host:port/);
  assert.throws(() => new BlobTree('sha256:x', ['a:1'], 2).ancestors('b:1'), /b:1 is not a member/);
  assert.throws(() => new BlobTree('sha256:x', ['a:1'], 0), /fanout 0/);
});
