import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Disk } from '../../src/io/types.ts';
import { openLocalImage } from '../../src/image/local.ts';
import { tempDir, vector } from '../helpers/env.ts';

const MiB = 1024 * 1024;
const HASH_A = '4b7f9fe45840bb4442b2d49676031200641aaf9aea3320b4f811d438ab5eb214';
const HASH_AB = 'cb797f1df32c91195cc89460b3286c2069609bbdf3ab8f4b87b90379ae22224f';

async function sha256(disk: Disk): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(8 * MiB);
  for (let at = 0; at < disk.size; at += buf.length) {
    const n = Math.min(buf.length, disk.size - at);
    await disk.read(buf.subarray(0, n), at);
    h.update(buf.subarray(0, n));
  }
  return h.digest('hex');
}

async function withDisk<T>(disk: Disk, f: (d: Disk) => Promise<T>): Promise<T> {
  try {
    return await f(disk);
  } finally {
    await disk.close();
  }
}

test('layer files, lowest first, in any wrapping read back to the manifest hashes', async () => {
  await withDisk(await openLocalImage([vector('A.lsmt'), vector('B.zstd.bs4.zlsmt')]), async (d) => {
    assert.equal(d.writable, false);
    assert.equal(await sha256(d), HASH_AB);
  });
  await withDisk(await openLocalImage([vector('A.lz4.bs4.tar.zlsmt')]), async (d) => assert.equal(await sha256(d), HASH_A));
  await assert.rejects(openLocalImage([vector('A.lsmt'), '/nonexistent/layer']), /\/nonexistent\/layer: no such layer file/);
  await assert.rejects(openLocalImage([]), /no image/);
});

test('a device config opens its lowers and records success or failure in resultFile', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'a'));
  await symlink(vector('A.lsmt'), join(dir, 'a', 'overlaybd.commit'));
  const config = join(dir, 'config.v1.json');
  await writeFile(config, JSON.stringify({ lowers: [{ dir: 'a' }, { file: vector('B.lsmt') }], resultFile: 'result' }));
  await withDisk(await openLocalImage([config]), async (d) => assert.equal(await sha256(d), HASH_AB));
  assert.equal(await readFile(join(dir, 'result'), 'utf8'), 'success');

  await writeFile(join(dir, 'junk.lsmt'), Buffer.alloc(4096, 7));
  await writeFile(config, JSON.stringify({ lowers: [{ file: 'junk.lsmt' }], resultFile: 'result' }));
  await assert.rejects(openLocalImage([config]), /junk\.lsmt/);
  assert.match(await readFile(join(dir, 'result'), 'utf8'), /^failed:.*junk\.lsmt/);
});

test('--writable DIR creates the layer (size from the lowers) and reopens it with the writes', async (t) => {
  const dir = await tempDir(t);
  const data = Buffer.alloc(64 * 1024, 0x3c);
  await withDisk(await openLocalImage([vector('A.lsmt')], { writableDir: dir }), async (d) => {
    assert.equal(d.writable, true);
    assert.equal(d.size, 1024 * MiB);
    await d.write(data, 5 * MiB);
    await d.flush();
  });
  await withDisk(await openLocalImage([vector('A.lsmt')], { writableDir: dir }), async (d) => {
    const back = Buffer.alloc(data.length);
    await d.read(back, 5 * MiB);
    assert.ok(back.equals(data));
    const a = Buffer.alloc(4096);
    await d.read(a, 0);
    assert.ok(a.some((b) => b !== 0), 'the lower layer shows through');
  });

  await assert.rejects(openLocalImage([], { writableDir: await tempDir(t) }), /needs --size/);
  await withDisk(await openLocalImage([], { writableDir: await tempDir(t), size: 16 * MiB }), async (d) => assert.equal(d.size, 16 * MiB));
  const half = await tempDir(t);
  await writeFile(join(half, 'writable_data'), '');
  await assert.rejects(openLocalImage([vector('A.lsmt')], { writableDir: half }), /has writable_data but not writable_index/);
  // A directory that does not exist yet is created, with the layer in it.
  await withDisk(await openLocalImage([vector('A.lsmt')], { writableDir: join(half, 'new', 'rw') }), async (d) => assert.equal(d.writable, true));
  assert.ok(existsSync(join(half, 'new', 'rw', 'writable_index')));
});

test('a config upper is writable, or read as a lower with readOnly', async (t) => {
  const dir = await tempDir(t);
  await copyFile(vector('A.rw.data'), join(dir, 'writable_data'));
  await copyFile(vector('A.rw.index'), join(dir, 'writable_index'));
  const config = join(dir, 'config.v1.json');
  await writeFile(config, JSON.stringify({ lowers: [], upper: { data: 'writable_data', index: 'writable_index' } }));
  await withDisk(await openLocalImage([config], { readOnly: true }), async (d) => {
    assert.equal(d.writable, false);
    assert.equal(await sha256(d), HASH_A);
  });
  await withDisk(await openLocalImage([config]), async (d) => assert.equal(d.writable, true));
  await assert.rejects(openLocalImage([config], { writableDir: dir }), /has an "upper" writable layer/);
});
