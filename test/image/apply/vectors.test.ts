/**
 * The shared reference: layer1.tar then layer2.tar (PAX tars written by Python tarfile) applied by
 * the reference converter gave `ext4_merged_tree`; ours must give the same tree, path for path.
 */
import assert from 'node:assert/strict';
import { createReadStream, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir, vector } from '../../helpers/env.ts';
import { walkTree, type NodeType } from '../../helpers/tree.ts';

interface ManifestNode { inode: number; mode: string; uid: number; gid: number; size?: number; sha256?: string; target?: string }

const TYPE_BITS: Record<string, NodeType> = { '10': 'file', '4': 'directory', '12': 'symlink' };

test('layer1.tar then layer2.tar give the manifest ext4_merged_tree', async (t) => {
  if (!requireSystem(t, { root: true })) return;
  const manifest = JSON.parse(readFileSync(vector('manifest.json'), 'utf8')) as { ext4_merged_tree: Record<string, ManifestNode> };
  const expected = manifest.ext4_merged_tree;
  const root = await tempDir(t);
  const s1 = await applyLayer(createReadStream(vector('layer1.tar')), root, { name: 'layer1.tar' });
  const s2 = await applyLayer(createReadStream(vector('layer2.tar')), root, { name: 'layer2.tar' });
  assert.equal(s1.entries.file, 7);
  assert.equal(s1.entries.hardlink, 1);
  assert.equal(s2.whiteouts, 1);
  assert.equal(s2.opaqueDirs, 1);

  const tree = await walkTree(root);
  assert.deepEqual([...tree.keys()].sort(), Object.keys(expected).sort(), 'same set of paths, nothing extra');
  for (const [path, want] of Object.entries(expected)) {
    const got = tree.get(path)!;
    const mode = parseInt(want.mode, 8);
    assert.equal(got.type, TYPE_BITS[want.mode.slice(0, -4)], `${path} type`);
    assert.equal(got.mode, mode & 0o7777, `${path} mode`);
    assert.equal(got.uid, want.uid, `${path} uid`);
    assert.equal(got.gid, want.gid, `${path} gid`);
    if (got.type === 'file') {
      assert.equal(got.size, want.size, `${path} size`);
      assert.equal(got.sha256, want.sha256, `${path} sha256`);
    }
    if (got.type === 'symlink') assert.equal(got.target, want.target, `${path} target`);
  }
  // Hard-link groups: equal manifest inodes <=> same inode here.
  const paths = Object.keys(expected).filter((p) => tree.get(p)!.type !== 'directory');
  for (const a of paths) {
    for (const b of paths) {
      if (a >= b) continue;
      assert.equal(tree.get(a)!.ino === tree.get(b)!.ino, expected[a]!.inode === expected[b]!.inode, `hard-link relation of ${a} and ${b}`);
    }
  }
  // Directory mtimes survive the children added after them.
  assert.equal(tree.get('/etc')!.mtimeNs, String(1700000000n * 1000000000n));
});
