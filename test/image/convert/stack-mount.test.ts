/**
 * The converter's mount of a stacked image: a file system still busy at the end (something holds
 * the mount) must fail the layer rather than let a lazy unmount commit it without its last writes;
 * a clean run leaves the writes in the writable layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withMountedStack } from '../../../src/image/convert/stack-mount.ts';
import { mountAt } from '../../../src/host/mount-table.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { hostNeeds } from '../../host/support.ts';

async function scratch(t: Parameters<typeof tempDir>[0]): Promise<{ work: string; rw: string; mnt: string }> {
  const dir = await tempDir(t, 'dadi-sm-');
  const work = join(dir, 'w');
  const rw = join(dir, 'rw');
  const mnt = join(dir, 'mnt');
  await Promise.all([mkdir(work), mkdir(rw), mkdir(mnt)]);
  return { work, rw, mnt };
}

test('a mount still busy when the layer is done fails the step instead of a lazy unmount passing silently', async (t) => {
  if (!requireSystem(t, hostNeeds)) return;
  const { work, rw, mnt } = await scratch(t);
  let holder: ReturnType<typeof spawn> | undefined;
  t.after(() => { holder?.kill('SIGKILL'); });
  await assert.rejects(
    withMountedStack({ lowers: [], writableDir: rw, size: 64 << 20, mkfs: true, mountPoint: mnt, workDir: work }, async (root) => {
      await writeFile(join(root, 'late.txt'), 'written last\n');
      // A process whose working directory is inside the mount keeps it busy.
      holder = spawn('sleep', ['60'], { cwd: root, stdio: 'ignore' });
      await new Promise((r) => holder!.once('spawn', r));
    }),
    /busy and only lazily unmounted/,
  );
  holder?.kill('SIGKILL');
  assert.equal(await mountAt(mnt), undefined, 'nothing left mounted');
});

test('a clean run unmounts and returns what the callback returned', async (t) => {
  if (!requireSystem(t, hostNeeds)) return;
  const { work, rw, mnt } = await scratch(t);
  const got = await withMountedStack({ lowers: [], writableDir: rw, size: 64 << 20, mkfs: true, mountPoint: mnt, workDir: work },
    async (root) => { await writeFile(join(root, 'a.txt'), 'a\n'); return 42; });
  assert.equal(got, 42);
  assert.equal(await mountAt(mnt), undefined);
});
