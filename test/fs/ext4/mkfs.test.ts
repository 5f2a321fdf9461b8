/**
 * The userspace mkfs: the same metadata mke2fs writes for the same options (compared through
 * dumpe2fs, and the root directory, lost+found and first inode-table block byte for byte), clean
 * for e2fsck at every size class (one group, a short last group, a dropped tail), mountable by the
 * kernel, and the same bytes on every run.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryDisk } from '../../../src/disk/memory-disk.ts';
import { mkfs } from '../../../src/fs/ext4/mkfs.ts';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { walkTree } from '../../helpers/tree.ts';
import { assertFsckClean, diskToImage, TEST_FS, withLoopMount } from './support.ts';

const GiB = 2 ** 30;

function dumpe2fs(image: string): string {
  return execFileSync('dumpe2fs', [image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

/** dumpe2fs without what differs by design: ITABLE_ZEROED (dadi's tables read as zeros), mke2fs's own write count, and the checksums that cover them. */
function comparable(text: string): string {
  return text.split('\n')
    .filter((l) => !/^(Lifetime writes|Checksum):/.test(l))
    .map((l) => l.replace(/ csum 0x[0-9a-f]+/, '').replace(/, ITABLE_ZEROED|ITABLE_ZEROED(, )?/, '').replace(/ \[\]/, ''))
    .join('\n');
}

function block(image: string, n: number, count = 1): Buffer {
  const buf = Buffer.alloc(count * 4096);
  const fd = openSync(image, 'r');
  try { readSync(fd, buf, 0, buf.length, n * 4096); } finally { closeSync(fd); }
  return buf;
}

/** A digest of everything written to the disk, with where it was written. */
async function diskDigest(disk: MemoryDisk): Promise<string> {
  const h = createHash('sha256');
  for (const r of await disk.extents!(0, disk.size)) {
    if (r.hole) continue;
    const buf = new Uint8Array(r.length);
    await disk.read(buf, r.offset);
    h.update(`${r.offset}:${r.length}:`).update(buf);
  }
  return h.digest('hex');
}

test('mkfs lays out what mke2fs -O ^has_journal,^resize_inode -G 1 does, at 64 GiB and at a size with a short last group', async (t) => {
  if (!requireSystem(t, { commands: ['mke2fs', 'dumpe2fs', 'e2fsck'] })) return;
  const dir = await tempDir(t);
  for (const size of [64 * GiB, 1000 * 2 ** 20 + 300 * 4096]) {
    const mine = join(dir, `mine-${size}.img`);
    const theirs = join(dir, `mke2fs-${size}.img`);
    const disk = new MemoryDisk(size);
    await mkfs(disk, { size, ...TEST_FS });
    await diskToImage(disk, mine);
    assertFsckClean(mine);
    writeFileSync(theirs, '');
    execFileSync('truncate', ['-s', String(size), theirs]);
    const r = spawnSync('mke2fs', ['-q', '-t', 'ext4', '-b', '4096', '-O', '^has_journal,sparse_super,flex_bg,^resize_inode', '-G', '1', '-U', TEST_FS.uuid,
      '-E', `hash_seed=${TEST_FS.hashSeed},lazy_itable_init=1,nodiscard,root_owner=0:0`, '-F', theirs], { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(TEST_FS.time) }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(comparable(dumpe2fs(mine)), comparable(dumpe2fs(theirs)));
    // Group 0's first inode-table block (inodes 1..16), the root directory and lost+found: byte for byte.
    const itable = 11;
    assert.ok(block(mine, itable).equals(block(theirs, itable)), 'reserved, root and lost+found inodes');
    assert.ok(block(mine, 523, 5).equals(block(theirs, 523, 5)), 'root and lost+found directory blocks');
    assert.ok(dumpe2fs(mine).includes('ITABLE_ZEROED'));
  }
});

test('mkfs is clean for e2fsck at every size class and gives the same bytes every time', async (t) => {
  if (!requireSystem(t, { commands: ['e2fsck'] })) return;
  const dir = await tempDir(t);
  for (const size of [64 * 4096, 8 * 2 ** 20, 129 * 2 ** 20, 128 * 2 ** 20 + 40 * 4096, 3 * GiB + 4096 * 7]) {
    const digests = [];
    for (let run = 0; run < 2; run++) {
      const disk = new MemoryDisk(size);
      await mkfs(disk, { size, ...TEST_FS });
      const image = join(dir, `fs-${size}-${run}.img`);
      await diskToImage(disk, image);
      assertFsckClean(image);
      digests.push(await diskDigest(disk));
      const fs = await Ext4Reader.open(disk, image);
      assert.deepEqual((await fs.list('/')).map((e) => e.name), ['lost+found']);
    }
    assert.equal(digests[0], digests[1]);
  }
  await assert.rejects(mkfs(new MemoryDisk(32 * 4096), { size: 32 * 4096, ...TEST_FS }), /too small/);
});

test('the kernel mounts a userspace-made file system', async (t) => {
  if (!requireSystem(t, { root: true, commands: ['mount', 'umount'] })) return;
  const dir = await tempDir(t);
  const disk = new MemoryDisk(GiB);
  await mkfs(disk, { size: GiB, ...TEST_FS });
  const image = join(dir, 'fs.img');
  await diskToImage(disk, image);
  const tree = await withLoopMount(image, dir, (mnt) => walkTree(mnt, { includeRoot: true }));
  assert.deepEqual([...tree.keys()], ['/', '/lost+found']);
  assert.equal(tree.get('/lost+found')!.mode, 0o700);
});
