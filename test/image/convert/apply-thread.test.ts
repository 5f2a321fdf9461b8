/**
 * The converter's applier thread: the same results and errors as applyLayer in-thread, one
 * thread reused across layers, and an abort from the caller's progress callback that leaves no
 * descriptor open under the target (one would keep the converter's mount busy).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { FormatError } from '../../../src/errors.ts';
import { ApplyError } from '../../../src/image/apply/index.ts';
import { ApplyThread } from '../../../src/image/convert/apply-thread.ts';
import { tempDir } from '../../helpers/env.ts';
import { packTar, streamOf } from '../apply/tar-build.ts';

function openUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try { return [readlinkSync(`/proc/self/fd/${fd}`)]; } catch { return []; }
  }).filter((target) => target.startsWith(`${dir}/`));
}

test('layers applied on the thread, one after another; ApplyError and FormatError keep their class', async (t) => {
  const root = await tempDir(t);
  const thread = new ApplyThread();
  t.after(() => thread.close());
  const l1 = await packTar([{ name: 'etc/', type: 'directory', mode: 0o755 }, { name: 'etc/a', mode: 0o644, data: 'one' }]);
  const s1 = await thread.apply(streamOf(gzipSync(l1)), root, { name: 'l1' });
  assert.equal(s1.entries.file, 1);
  assert.equal(s1.entries.directory, 1);
  const l2 = await packTar([{ name: 'etc/.wh.a', data: '' }, { name: 'etc/b', mode: 0o600, data: 'two' }]);
  const s2 = await thread.apply(streamOf(l2), root, { name: 'l2' });
  assert.equal(s2.whiteouts, 1);
  assert.deepEqual(readdirSync(join(root, 'etc')), ['b']);
  assert.equal(readFileSync(join(root, 'etc/b'), 'utf8'), 'two');

  const escape = await packTar([{ name: '../x', data: 'no' }]);
  await assert.rejects(thread.apply(streamOf(escape), root, { name: 'bad' }), (err: unknown) => err instanceof ApplyError && /escapes the root/.test(err.message));
  const truncated = gzipSync(l1).subarray(0, 40);
  await assert.rejects(thread.apply(streamOf(truncated), root, { name: 'cut' }), (err: unknown) => err instanceof FormatError);
  // A failed layer costs the thread; the next layer gets a fresh one.
  const s3 = await thread.apply(streamOf(l1), root, { name: 'again' });
  assert.equal(s3.entries.file, 1);
});

test('a progress callback that throws mid-file aborts the layer with its error and leaves no file open', async (t) => {
  const root = await tempDir(t);
  const thread = new ApplyThread();
  t.after(() => thread.close());
  // One big file spanning many batches, so the abort lands while it is open.
  const big = Buffer.alloc(24 << 20, 7);
  const layer = await packTar([{ name: 'big', mode: 0o644, data: big }, { name: 'after', data: 'x' }]);
  const boom = new Error('stop here');
  let calls = 0;
  await assert.rejects(thread.apply(streamOf(layer), root, {
    name: 'l', onProgress: () => { if (++calls === 2) throw boom; },
  }), (err: unknown) => err === boom);
  assert.deepEqual(openUnder(root), []);
  assert.ok(!readdirSync(root).includes('after'), 'nothing after the abort was applied');
});
