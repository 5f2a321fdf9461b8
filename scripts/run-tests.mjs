#!/usr/bin/env node
// Runs every test/**/*.test.ts with node:test through tsx (Node 20's --test takes no globs).
// Extra arguments filter test files by substring: `node scripts/run-tests.mjs zfile lsmt`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir) {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}
const filters = process.argv.slice(2);
const files = walk('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${process.env.DADI_TEST_CONCURRENCY ?? 2}`, ...files],
  { stdio: 'inherit' });
process.exit(r.status ?? 1);
