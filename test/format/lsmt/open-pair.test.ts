import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openWritablePairFiles } from '../../../src/format/lsmt/readonly.ts';
import { canReadSync } from '../../../src/io/types.ts';
import { tempDir, vector } from '../../helpers/env.ts';

const openFds = (): number => readdirSync('/proc/self/fd').length;

test('openWritablePairFiles reads the reference pair, and closes what it opened when opening fails', async (t) => {
  const layer = await openWritablePairFiles(vector('A.rw.data'), vector('A.rw.index'));
  assert.ok(layer.index.count > 0);
  assert.ok(canReadSync(layer.data), 'the data file declares synchronous reads, so commit gathers piece by piece');
  await layer.close();

  const dir = await tempDir(t);
  const notAnIndex = join(dir, 'junk.index');
  await writeFile(notAnIndex, Buffer.alloc(4096, 7));
  const before = openFds();
  await assert.rejects(openWritablePairFiles(vector('A.rw.data'), join(dir, 'missing.index')), /ENOENT/);
  await assert.rejects(openWritablePairFiles(vector('A.rw.data'), notAnIndex), /junk\.index/);
  await assert.rejects(openWritablePairFiles(join(dir, 'missing.data'), vector('A.rw.index')), /ENOENT/);
  assert.equal(openFds(), before, 'no file descriptor is left open');
});
