/**
 * Shared plumbing for the host tests: a private state directory, a raw ext4 image, the
 * "nothing left behind" check, and a last-resort cleanup that runs even when a test failed
 * half way (lazy unmounts, loop detach, fusermount3 -u -z, SIGKILL).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { loopsBackedBy } from '../../src/host/loop-device.ts';
import { mountAt } from '../../src/host/mount-table.ts';
import { isRunning } from '../../src/host/processes.ts';
import { listRecords, recordPath, type MountRecord } from '../../src/host/state.ts';
import { tempDir } from '../helpers/env.ts';

export const hostNeeds = { root: true, commands: ['nbdfuse', 'losetup', 'mount', 'mkfs.ext4', 'fusermount3'], paths: ['/dev/fuse'] };

function sh(argv: string[]): void {
  spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 10_000 });
}

/** Forcibly removes everything any record in `stateDir` started; used from t.after. */
export async function forceCleanup(stateDir: string): Promise<void> {
  for (const rec of await listRecords(stateDir)) {
    sh(['umount', '-l', rec.mountPoint]);
    if (rec.attach?.kind === 'nbdfuse') {
      for (const dev of await loopsBackedBy(join(rec.attach.fuseDir, 'nbd'))) sh(['losetup', '-d', dev]);
      sh(['fusermount3', '-u', '-z', rec.attach.fuseDir]);
      if (rec.attach.nbdfuse && isRunning(rec.attach.nbdfuse)) sh(['kill', '-9', String(rec.attach.nbdfuse.pid)]);
    }
    if (rec.server.identity && isRunning(rec.server.identity)) sh(['kill', '-9', String(rec.server.identity.pid)]);
  }
}

/** A state directory and a scratch directory for one test, cleaned up whatever happens. */
export async function hostScratch(t: TestContext): Promise<{ stateDir: string; dir: string }> {
  const dir = await tempDir(t, 'dadi-host-');
  const stateDir = join(dir, 'state');
  await mkdir(stateDir);
  // Registered after tempDir's removal hook, so it runs first (t.after hooks run in reverse).
  t.after(() => forceCleanup(stateDir));
  return { stateDir, dir };
}

/** A fresh ext4 image file of `size` bytes holding the given files. */
export function makeExt4Image(path: string, sizeMiB: number): void {
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', path, `${sizeMiB}M`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** Asserts that a torn-down mount left no mount, loop device, fuse mount, process or record. */
export async function assertNothingLeft(stateDir: string, rec: MountRecord): Promise<void> {
  assert.equal(await mountAt(rec.mountPoint), undefined, `${rec.mountPoint} is still mounted`);
  if (rec.attach?.kind === 'nbdfuse') {
    assert.deepEqual(await loopsBackedBy(join(rec.attach.fuseDir, 'nbd')), [], 'a loop device is still attached');
    assert.equal(await mountAt(rec.attach.fuseDir), undefined, 'nbdfuse is still mounted');
    assert.equal(isRunning(rec.attach.nbdfuse), false, 'nbdfuse is still running');
  }
  assert.equal(isRunning(rec.server.identity), false, 'the server is still running');
  assert.equal(existsSync(recordPath(stateDir, rec.mountPoint)), false, 'the state record remains');
  assert.equal(existsSync(rec.workDir), false, 'the work directory remains');
}
