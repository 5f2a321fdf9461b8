/** Failure paths of stacks opened from real files. */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStackFromFiles } from '../../../src/image/chain/files.ts';
import { DiskError } from '../../../src/errors.ts';
import { tempDir, vector } from '../../helpers/env.ts';
import { fullSha256 } from '../../conformance/stack-hash.ts';

test('a corrupt block in a compressed lower fails the read with EIO naming the layer file', async (t) => {
  const dir = await tempDir(t);
  const bad = join(dir, 'A-corrupt.zlsmt');
  await copyFile(vector('A.lz4.bs4.zlsmt'), bad);
  const fh = await open(bad, 'r+');
  const size = (await fh.stat()).size;
  // Damage the middle of the file: compressed data blocks, away from the header and the index.
  await fh.write(new Uint8Array(64).fill(0xa5), 0, 64, Math.floor(size / 3));
  await fh.close();
  const stack = await openStackFromFiles([bad, vector('B.lsmt')]);
  t.after(() => stack.close());
  await assert.rejects(fullSha256(stack), (e: unknown) => {
    assert.ok(e instanceof DiskError, String(e));
    assert.equal(e.code, 'EIO');
    assert.match(e.message, /A-corrupt\.zlsmt/);
    return true;
  });
});

test('openStackFromFiles closes the layers it opened when a later one fails', async () => {
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  await assert.rejects(openStackFromFiles([vector('A.lsmt'), vector('B.zstd.bs4.zlsmt'), vector('layer1.tar')]), /layer1\.tar/);
  await assert.rejects(openStackFromFiles([vector('A.lsmt')], { upper: { data: '/nonexistent/rw.data', index: '/nonexistent/rw.index' } }));
  assert.equal(fds(), before);
});

test('a lower given as a writable pair is read-only in the stack', async () => {
  const stack = await openStackFromFiles([{ data: vector('A.rw.data'), index: vector('A.rw.index') }]);
  try {
    assert.equal(stack.writable, false);
    await assert.rejects(stack.write(new Uint8Array(512), 0), (e: unknown) => e instanceof DiskError && e.code === 'EROFS');
  } finally {
    await stack.close();
  }
});
