/**
 * Layer identity on a stack: a stack whose parent uuids do not chain still opens (overlaybd does
 * not check either), with a warning that names both layers; one that chains says nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runDadi, vector } from '../../helpers/env.ts';

test('a stack whose parent uuids do not chain opens with a warning naming both layers; a chained one warns nothing', async () => {
  const chained = await runDadi(['cat', '-o', '/dev/null', vector('A.lsmt'), vector('B.lsmt')]);
  assert.equal(chained.code, 0, chained.stderr);
  assert.doesNotMatch(chained.stderr, /names parent/);

  const broken = await runDadi(['cat', '-o', '/dev/null', vector('ext4-L1.lsmt'), vector('B.lsmt')]);
  assert.equal(broken.code, 0, broken.stderr);
  const warning = broken.stderr.split('\n').find((l) => l.includes('names parent'));
  assert.ok(warning, broken.stderr);
  const w = JSON.parse(warning) as { level: number; msg: string };
  assert.ok(w.level >= 40, 'a warning');
  assert.match(w.msg, /B\.lsmt names parent 5CA1AB1E-0000-4000-8000-000000000001/);
  assert.match(w.msg, /ext4-L1\.lsmt, is 5CA1AB1E-0000-4000-8000-000000000011/);
});
