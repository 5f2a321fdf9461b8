/**
 * Property: random stacks of layers over a tiny name space, applied to a real directory, give
 * exactly the tree of a simple in-memory model of OCI layer semantics (types, contents, symlink
 * targets, hard-link groups), and fail exactly where the model says an entry must be refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ApplyError, applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { walkTree, type Tree } from '../../helpers/tree.ts';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { applyExt4, assertFsckClean, diskToImage, freshFs, readerTree } from '../../fs/ext4/support.ts';
import { packTar, streamOf, type PackEntry } from './tar-build.ts';

type Op =
  | { kind: 'file'; path: string; data: string }
  | { kind: 'dir'; path: string }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'hardlink'; path: string; target: string }
  | { kind: 'whiteout'; path: string }
  | { kind: 'opaque'; path: string };

type MNode = { type: 'file'; data: string; ino: number } | { type: 'dir' } | { type: 'symlink'; target: string; ino: number };

const PATHS = ['a', 'b', 'a/x', 'a/y', 'b/x', 'a/x/z', 'a/y/z', 'b/x/z'];
const pathArb = fc.constantFrom(...PATHS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('file' as const), path: pathArb, data: fc.constantFrom('1', '22', '333') }),
  fc.record({ kind: fc.constant('dir' as const), path: pathArb }),
  fc.record({ kind: fc.constant('symlink' as const), path: pathArb, target: fc.constantFrom('a', '../b', 'x') }),
  fc.record({ kind: fc.constant('hardlink' as const), path: pathArb, target: pathArb }),
  fc.record({ kind: fc.constant('whiteout' as const), path: pathArb }),
  fc.record({ kind: fc.constant('opaque' as const), path: fc.constantFrom('', ...PATHS) }),
);
const stackArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 });

const parent = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const ancestors = (p: string) => { const out: string[] = []; for (let q = parent(p); q !== ''; q = parent(q)) out.unshift(q); return out; };

function entryOf(op: Op): PackEntry {
  const base = op.path.slice(op.path.lastIndexOf('/') + 1);
  const dirPrefix = parent(op.path) === '' ? '' : `${parent(op.path)}/`;
  switch (op.kind) {
    case 'file': return { name: op.path, data: op.data };
    case 'dir': return { name: op.path, type: 'directory', mode: 0o755 };
    case 'symlink': return { name: op.path, type: 'symlink', linkname: op.target };
    case 'hardlink': return { name: op.path, type: 'link', linkname: op.target };
    case 'whiteout': return { name: `${dirPrefix}.wh.${base}`, data: '' };
    case 'opaque': return { name: op.path === '' ? '.wh..wh..opq' : `${op.path}/.wh..wh..opq`, data: '' };
  }
}

class RefusedByModel extends Error {}

/** OCI layer semantics over a Map, written for clarity rather than speed. */
class Model {
  readonly nodes = new Map<string, MNode>();
  private nextIno = 1;

  private removeTree(p: string): void {
    for (const k of [...this.nodes.keys()]) if (k === p || k.startsWith(`${p}/`)) this.nodes.delete(k);
  }

  private children(d: string): string[] {
    return [...this.nodes.keys()].filter((k) => parent(k) === d);
  }

  private prune(d: string, mine: Set<string>): void {
    for (const c of this.children(d)) {
      if (!mine.has(c)) this.removeTree(c);
      else if (this.nodes.get(c)?.type === 'dir') this.prune(c, mine);
    }
  }

  /** Ancestors must be directories: missing ones are made (create) or mean "nothing there". */
  private walk(p: string, create: boolean, mine: Set<string>): boolean {
    for (const a of ancestors(p)) {
      const n = this.nodes.get(a);
      if (n === undefined) {
        if (!create) return false;
        this.nodes.set(a, { type: 'dir' });
        mine.add(a);
      } else if (n.type !== 'dir') {
        throw new RefusedByModel(a);
      }
    }
    return true;
  }

  applyLayer(ops: Op[]): void {
    const mine = new Set<string>(['']);
    const touch = (p: string) => { mine.add(p); for (const a of ancestors(p)) mine.add(a); };
    for (const op of ops) {
      if (op.kind === 'opaque') {
        if (op.path !== '' && !this.walk(`${op.path}/.wh..wh..opq`, false, mine)) continue;
        if (op.path !== '') touch(op.path);
        this.prune(op.path, mine);
        continue;
      }
      if (op.kind === 'whiteout') {
        if (!this.walk(op.path, false, mine) || !this.nodes.has(op.path)) continue;
        if (!mine.has(op.path)) this.removeTree(op.path);
        else if (this.nodes.get(op.path)!.type === 'dir') this.prune(op.path, mine);
        continue;
      }
      let linked: MNode | undefined;
      if (op.kind === 'hardlink') {
        if (!this.walk(op.target, false, mine)) throw new RefusedByModel(op.target);
        linked = this.nodes.get(op.target);
        if (linked === undefined || linked.type === 'dir') throw new RefusedByModel(op.target);
        if (op.target.startsWith(`${op.path}/`)) throw new RefusedByModel(op.target);
      }
      this.walk(op.path, true, mine);
      touch(op.path);
      if (op.kind === 'hardlink' && op.target === op.path) continue;
      const existing = this.nodes.get(op.path);
      if (existing && !(existing.type === 'dir' && op.kind === 'dir')) this.removeTree(op.path);
      if (op.kind === 'file') this.nodes.set(op.path, { type: 'file', data: op.data, ino: this.nextIno++ });
      else if (op.kind === 'symlink') this.nodes.set(op.path, { type: 'symlink', target: op.target, ino: this.nextIno++ });
      else if (op.kind === 'dir') { if (!existing || existing.type !== 'dir') this.nodes.set(op.path, { type: 'dir' }); }
      else this.nodes.set(op.path, linked!);
    }
  }

  /** The comparable view: type, content hash, target and hard-link group per path. */
  view(): Record<string, string> {
    const byIno = new Map<number, string[]>();
    for (const [p, n] of this.nodes) if (n.type !== 'dir') byIno.set(n.ino, [...(byIno.get(n.ino) ?? []), p]);
    const out: Record<string, string> = {};
    for (const [p, n] of this.nodes) {
      const group = n.type === 'dir' ? [] : byIno.get(n.ino)!;
      const link = group.length > 1 ? `/${[...group].sort()[0]}` : '';
      if (n.type === 'file') out[`/${p}`] = `file ${createHash('sha256').update(n.data).digest('hex')} ${link}`;
      else if (n.type === 'symlink') out[`/${p}`] = `symlink ${n.target} ${link}`;
      else out[`/${p}`] = 'directory';
    }
    return out;
  }
}

/** Applies one layer to the target under test; returns its tree in the model's terms. */
interface Subject { apply(layer: Buffer): Promise<void>; view(): Promise<Record<string, string>>; close(): Promise<void> }

async function hostSubject(): Promise<Subject> {
  const root = await mkdtemp(join(tmpdir(), 'dadi-model-'));
  return {
    apply: async (layer) => { await applyLayer(streamOf(layer), root); },
    view: async () => viewOf(await walkTree(root)),
    close: () => rm(root, { recursive: true, force: true }),
  };
}

/** The userspace ext4; at the end of each stack, e2fsck must find the file system clean. */
async function ext4Subject(scratch: string): Promise<Subject> {
  const disk = await freshFs(64 << 20);
  return {
    apply: async (layer) => { await applyExt4(disk, [layer]); },
    view: async () => viewOf(await readerTree(await Ext4Reader.open(disk, 'model disk'), { exclude: ['/lost+found'] })),
    close: async () => {
      const image = join(scratch, 'model.img');
      await diskToImage(disk, image);
      assertFsckClean(image);
    },
  };
}

function viewOf(tree: Tree): Record<string, string> {
  const real: Record<string, string> = {};
  for (const [p, n] of tree) {
    const link = n.linkGroup ?? '';
    real[p] = n.type === 'file' ? `file ${n.sha256} ${link}` : n.type === 'symlink' ? `symlink ${n.target} ${link}` : n.type;
  }
  return real;
}

async function checkAgainstModel(subject: Subject, layers: Op[][]): Promise<void> {
  try {
    const model = new Model();
    for (const ops of layers) {
      let modelRefused = false;
      try { model.applyLayer(ops); } catch (err) { if (!(err instanceof RefusedByModel)) throw err; modelRefused = true; }
      let realError: unknown = null;
      try { await subject.apply(await packTar(ops.map(entryOf))); } catch (err) { realError = err; }
      if (realError !== null && !(realError instanceof ApplyError)) throw realError;
      assert.equal(realError !== null, modelRefused, `refused by applier: ${String(realError)}; by model: ${modelRefused}`);
      assert.deepEqual(await subject.view(), model.view());
      if (modelRefused) break;
    }
  } finally {
    await subject.close();
  }
}

test('random layer stacks match a simple model of OCI layer semantics', async (t) => {
  if (!requireSystem(t, { root: true })) return;
  await fc.assert(fc.asyncProperty(stackArb, async (layers) => checkAgainstModel(await hostSubject(), layers)), { numRuns: 150 });
});

test('random layer stacks applied to the userspace ext4 match the same model and leave it e2fsck-clean, without privileges', async (t) => {
  if (!requireSystem(t, { commands: ['e2fsck'] })) return;
  const scratch = await tempDir(t);
  await fc.assert(fc.asyncProperty(stackArb, async (layers) => checkAgainstModel(await ext4Subject(scratch), layers)), { numRuns: 150 });
});
