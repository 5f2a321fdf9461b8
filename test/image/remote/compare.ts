/** Whole-export comparison for the attach tests: what a real NBD client copies equals `dadi cat`. */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runDadi, tempDir } from '../../helpers/env.ts';

const run = promisify(execFile);

/** `dadi cat` of the local layers and `nbdcopy` of the export into sparse files, then `cmp`. */
export async function assertExportEquals(t: TestContext, uri: string, layers: string[]): Promise<void> {
  const dir = await tempDir(t, 'dadi-cmp-');
  const expected = join(dir, 'expected.img');
  const got = join(dir, 'export.img');
  const cat = await runDadi(['cat', '-o', expected, ...layers]);
  assert.equal(cat.code, 0, cat.stderr);
  await run('nbdcopy', [uri, got], { timeout: 60_000 });
  await run('cmp', [expected, got], { timeout: 60_000 });
}
