/**
 * Checks of converted images that need no mount: every stack of the first n layers is clean for
 * e2fsck, and dadi's userspace reader sees exactly the tree the kernel mount shows (every path,
 * type, mode, owner, time, xattr, link and every file's bytes), through the API and the CLI.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { openLocalImage } from '../../../src/image/local.ts';
import { runDadi } from '../../helpers/env.ts';
import { diffTrees, type Tree } from '../../helpers/tree.ts';
import { assertFsckClean, readerTree } from '../../fs/ext4/support.ts';

/** e2fsck -fn on the merged disk of the first 1..n layers (as `dadi cat` writes it). */
export async function assertStacksClean(dir: string, layerFiles: string[], name: string): Promise<void> {
  for (let n = 1; n <= layerFiles.length; n++) {
    const image = join(dir, `${name}-${n}.img`);
    const r = await runDadi(['cat', '-o', image, ...layerFiles.slice(0, n)]);
    assert.equal(r.code, 0, r.stderr);
    try {
      assertFsckClean(image);
    } finally {
      await rm(image, { force: true });
    }
  }
}

/** The reader's tree of the stacked layer files equals `mounted`; `dadi ls -R` lists the same paths and `dadi cat-file` gives the same bytes. */
export async function assertReaderSeesTree(layerFiles: string[], image: string, mounted: Tree): Promise<void> {
  const disk = await openLocalImage(layerFiles, { readOnly: true });
  try {
    const tree = await readerTree(await Ext4Reader.open(disk, 'converted image'), { exclude: ['/lost+found'] });
    const diff = diffTrees(tree, mounted);
    assert.deepEqual(diff.slice(0, 20), [], 'the userspace reader sees what the kernel mount shows');
  } finally {
    await disk.close();
  }
  const ls = await runDadi(['ls', '-R', image, '/']);
  assert.equal(ls.code, 0, ls.stderr);
  const listed = ls.stdout.toString().split('\n').filter((p) => p !== '' && p !== '/lost+found' && !p.startsWith('/lost+found/'));
  assert.deepEqual(listed.sort(), [...mounted.keys()].sort());
  for (const f of [...mounted.values()].filter((n) => n.type === 'file').slice(0, 5)) {
    const cat = await runDadi(['cat-file', image, f.path]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(createHash('sha256').update(cat.stdout).digest('hex'), f.sha256, f.path);
  }
}
