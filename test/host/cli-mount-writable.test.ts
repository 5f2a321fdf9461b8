/**
 * `dadi mount --writable` end to end: changes made through the kernel's ext4 land in the
 * writable layer, survive umount, commit to a new layer and read back on the stack; a killed
 * server is still cleaned up.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFile, chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRunning } from '../../src/host/processes.ts';
import { requireSystem } from '../helpers/env.ts';
import { cliNeeds, dadi, L1, L2, manifestTree, mountJson, snapshot } from './cli-support.ts';
import { assertNothingLeft, hostScratch } from './support.ts';

/** A state dir plus an empty mount point and writable-layer dir. */
async function writableScratch(t: TestContext): Promise<{ stateDir: string; dir: string; mnt: string; upper: string }> {
  const { stateDir, dir } = await hostScratch(t);
  const mnt = join(dir, 'mnt');
  const upper = join(dir, 'upper');
  await Promise.all([mkdir(mnt), mkdir(upper)]);
  return { stateDir, dir, mnt, upper };
}

test('writable round trip: changes through the mount, committed to a new layer, read back on the stack', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, dir, mnt, upper } = await writableScratch(t);
  const rec = await mountJson(stateDir, ['--writable', upper, L1, L2, mnt]);
  assert.equal(rec.readOnly, false);

  const big = Buffer.alloc((1 << 20) + 12345);
  for (let i = 0; i < big.length; i += 32) createHash('sha256').update(`block ${i}`).digest().copy(big, i);
  await mkdir(join(mnt, 'data'));
  await writeFile(join(mnt, 'data', 'big.bin'), big);
  await writeFile(join(mnt, 'etc', 'hello.txt'), 'hello, rewritten\n');
  await appendFile(join(mnt, 'etc', 'text.txt'), 'one more line\n');
  await rm(join(mnt, 'opt', 'c'));
  await symlink('../etc/hello.txt', join(mnt, 'data', 'hello-link'));
  await chmod(join(mnt, 'bin', 'tool'), 0o700);
  const changed = await snapshot(mnt);

  // The changes are the ones we made, and every other file of the image is as the manifest says.
  const touched = new Set(['/data', '/data/big.bin', '/data/hello-link', '/etc/hello.txt', '/etc/text.txt', '/opt/c', '/bin/tool']);
  const untouched = (tree: Record<string, unknown>) => Object.fromEntries(Object.entries(tree).filter(([p]) => !touched.has(p)));
  assert.deepEqual(untouched(changed), untouched(await manifestTree()));
  assert.equal(changed['/opt/c'], undefined);
  assert.equal(changed['/bin/tool']?.mode, '100700');
  assert.equal(changed['/data/hello-link']?.target, '../etc/hello.txt');
  assert.equal(changed['/data/big.bin']?.sha256, createHash('sha256').update(big).digest('hex'));
  assert.equal(changed['/etc/hello.txt']?.size, 'hello, rewritten\n'.length);

  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, rec);

  // Committed to a layer of its own and stacked on the lowers, it reads back as the changed tree.
  const layer = join(dir, 'NEW.lsmt');
  await dadi(stateDir, ['layer', 'commit', join(upper, 'writable_data'), join(upper, 'writable_index'), layer]);
  const again = await mountJson(stateDir, ['--read-only', L1, L2, layer, mnt]);
  assert.equal(again.readOnly, true);
  assert.deepEqual(await snapshot(mnt), changed);
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, again);
});

test('after kill -9 of the server, dadi umount still cleans up', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, mnt, upper } = await writableScratch(t);
  const rec = await mountJson(stateDir, ['--writable', upper, L1, L2, mnt]);
  await writeFile(join(mnt, 'scratch.txt'), 'in flight\n');
  process.kill(rec.server.identity!.pid, 'SIGKILL');
  while (isRunning(rec.server.identity)) await new Promise((res) => setTimeout(res, 10));
  assert.match(await dadi(stateDir, ['mount', '--list']), new RegExp(`^MOUNT POINT\\tSTATUS\\tMODE\\tDEVICE\\tIMAGE\\n${rec.mountPoint}\\tstale\\trw\\t/dev/loop\\d+\\t`));
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, rec);
});

test('dadi mount --writable creates its directory; the new layer keeps its identity (uuid, parent, size) through commit', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, dir, mnt } = await writableScratch(t);
  const upper = join(dir, 'not', 'yet', 'there');
  const rec = await mountJson(stateDir, ['--writable', upper, L1, L2, mnt]);
  const info = async (args: string[]): Promise<{ uuid: string; parentUuid: string; virtualSize: number }> =>
    JSON.parse(await dadi(stateDir, ['layer', 'info', '--json', ...args])) as { uuid: string; parentUuid: string; virtualSize: number };
  const top = await info([L2]);
  const created = await info([join(upper, 'writable_data'), '--index', join(upper, 'writable_index')]);
  assert.equal(created.parentUuid, top.uuid, 'the writable layer names the top lower as its parent');
  assert.notEqual(created.uuid, '00000000-0000-0000-0000-000000000000');
  assert.equal(created.virtualSize, top.virtualSize, 'and records the size of the stack it was made on');
  await writeFile(join(mnt, 'new.txt'), 'new\n');
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, rec);

  const layer = join(dir, 'NEW.lsmt');
  await dadi(stateDir, ['layer', 'commit', join(upper, 'writable_data'), join(upper, 'writable_index'), layer]);
  assert.deepEqual(await info([layer]), { ...(await info([layer])), uuid: created.uuid, parentUuid: top.uuid, virtualSize: top.virtualSize });
});
