/**
 * `dadi mount` of an overlaybd device config (config.v1.json) with an upper layer: writable
 * without --writable (the export decides), and `--read-only` reads the upper as a lower.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireSystem } from '../helpers/env.ts';
import { cliNeeds, dadi, L1, L2, manifestTree, mountJson, snapshot } from './cli-support.ts';
import { assertNothingLeft, hostScratch } from './support.ts';

test('a device config with an upper mounts writable; with --read-only it shows the upper read-only', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, dir } = await hostScratch(t);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  await dadi(stateDir, ['layer', 'create', join(dir, 'data'), join(dir, 'index'), '--size', '0']);
  const config = join(dir, 'config.v1.json');
  await writeFile(config, JSON.stringify({ lowers: [{ file: L1 }, { file: L2 }], upper: { data: 'data', index: 'index' } }));

  const rec = await mountJson(stateDir, [config, mnt]);
  assert.equal(rec.readOnly, false);
  await writeFile(join(mnt, 'etc', 'from-config.txt'), 'kept in the upper\n');
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, rec);

  const ro = await mountJson(stateDir, ['--read-only', config, mnt]);
  assert.equal(ro.readOnly, true);
  assert.equal(await readFile(join(mnt, 'etc', 'from-config.txt'), 'utf8'), 'kept in the upper\n');
  await assert.rejects(writeFile(join(mnt, 'etc', 'x'), 'no'), /EROFS|read-only/i);
  const tree = await snapshot(mnt);
  const expected = await manifestTree();
  // The new file is the only difference from the lowers.
  assert.deepEqual(Object.keys(tree).filter((p) => !(p in expected)), ['/etc/from-config.txt']);
  for (const [p, node] of Object.entries(expected)) assert.deepEqual(tree[p], node, p);
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, ro);
});
