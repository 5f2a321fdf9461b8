import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runDadi } from '../helpers/env.ts';

test('dadi --help lists the commands and exits 0', async () => {
  const r = await runDadi(['--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /Usage: dadi/);
});

test('an unknown command exits non-zero with a message', async () => {
  const r = await runDadi(['no-such-command']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /error: (unknown command|too many arguments)/);
});
