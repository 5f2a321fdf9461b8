import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalDataFile, openWritablePairForCommit } from '../../../src/format/lsmt/local-data-file.ts';
import { tempDir, vector } from '../../helpers/env.ts';

const openFds = (): number => readdirSync('/proc/self/fd').length;

test('openWritablePairForCommit reads the reference pair, and closes what it opened when opening fails', async (t) => {
  const layer = await openWritablePairForCommit(vector('A.rw.data'), vector('A.rw.index'));
  assert.ok(layer.index.count > 0);
  assert.equal(typeof (layer.data as LocalDataFile).readSync, 'function', 'the data file reads synchronously');
  await layer.close();

  const dir = await tempDir(t);
  const notAnIndex = join(dir, 'junk.index');
  await writeFile(notAnIndex, Buffer.alloc(4096, 7));
  const before = openFds();
  await assert.rejects(openWritablePairForCommit(vector('A.rw.data'), join(dir, 'missing.index')), /ENOENT/);
  await assert.rejects(openWritablePairForCommit(vector('A.rw.data'), notAnIndex), /junk\.index/);
  await assert.rejects(openWritablePairForCommit(join(dir, 'missing.data'), vector('A.rw.index')), /ENOENT/);
  assert.equal(openFds(), before, 'no file descriptor is left open');
});
