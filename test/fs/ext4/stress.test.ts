/**
 * The generated stress image through the userspace ext4 writer, layer by layer: e2fsck clean after
 * each; the reader's tree equals GNU tar's extraction and the kernel's view of the image; the
 * extent-tree of a file written through a thousand freed holes has two index levels; and the
 * disk ranges the extents API gives hold exactly the file's bytes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { referenceApply } from '../../image/apply/reference.ts';
import { applyExt4, assertFsckClean, diskToImage, freshFs, readerTree, withLoopMount } from './support.ts';
import { FILLER, MANY, stressLayers, WHITED_OUT } from './stress-layers.ts';

test('stress image: thousands of names in one directory, deep trees, every size class, a block-group-crossing file, deletions across layers; e2fsck-clean after every layer, equal to GNU tar and to the kernel\'s view', { timeout: 600_000 }, async (t) => {
  if (!requireSystem(t, { commands: ['e2fsck', 'tar'] })) return;
  const dir = await tempDir(t);
  const layers = await stressLayers();
  const disk = await freshFs(2 * 2 ** 30);
  const image = join(dir, 'fs.img');
  for (const layer of layers) {
    await applyExt4(disk, [layer]);
    await diskToImage(disk, image);
    assertFsckClean(image);
  }
  const fs = await Ext4Reader.open(disk, 'stress');
  const tree = await readerTree(fs, { exclude: ['/lost+found'] });
  assert.equal([...tree.keys()].filter((p) => p.startsWith('/many/')).length, MANY - WHITED_OUT + 200);
  assert.equal(tree.has('/deep'), false);
  assert.deepEqual([...tree.keys()].filter((p) => p.startsWith('/opaque/')), ['/opaque/new']);
  assert.equal(tree.get('/links/hard-to-lower')!.linkGroup, '/links/hard-to-lower');

  // The filler went through the freed holes: many extents, a tree of depth 2.
  const filler = await fs.inode(await fs.resolve('/sizes/filler'));
  const root = new DataView(filler.block.buffer, filler.block.byteOffset, 60);
  assert.equal(root.getUint16(6, true), 2, 'extent tree depth');
  const ranges = await fs.extents('/sizes/filler');
  assert.ok(ranges.length > 1400, `${ranges.length} ranges`);
  assert.equal(ranges.reduce((n, r) => n + r.length, 0), FILLER);
  // The ranges hold the file's bytes, in order.
  const fd = openSync(image, 'r');
  const h = createHash('sha256');
  try {
    for (const r of ranges) { const b = Buffer.alloc(r.length); readSync(fd, b, 0, r.length, r.offset); h.update(b); }
  } finally { closeSync(fd); }
  assert.equal(h.digest('hex'), tree.get('/sizes/filler')!.sha256);

  const ref = join(dir, 'ref');
  await mkdir(ref);
  referenceApply(ref, layers, dir);
  assert.deepEqual(diffTrees(tree, await walkTree(ref)), []);
  if (!requireSystem(t, { root: true, commands: ['mount'] })) return;
  const mounted = await withLoopMount(image, dir, (mnt) => walkTree(mnt, { exclude: ['/lost+found'] }));
  assert.deepEqual(diffTrees(tree, mounted), []);
});
