#!/usr/bin/env node
// Before/after benchmark of two checkouts, interleaved: for each bench file, runs it in A, then
// in B, ROUNDS times, and prints every figure of both with the ratio B/A (>1 = B better, taking
// "lower is better" units into account). Interleaving matters on a shared machine: load from
// elsewhere then hits both sides alike.
//   node scripts/bench-ab.mjs DIR_A DIR_B [--rounds N] [bench-name-filter ...]
// Each checkout needs its node_modules; the figures come from each one's `bench/run.ts` table.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
let rounds = 2;
const rest = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--rounds') rounds = Number(args[++i]);
  else rest.push(args[i]);
}
const [a, b, ...filters] = rest;
if (!a || !b) {
  console.error('usage: bench-ab.mjs DIR_A DIR_B [--rounds N] [filter ...]');
  process.exit(2);
}
const dirs = [resolve(a), resolve(b)];
const benches = readdirSync(join(dirs[1], 'bench')).filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();

const LOWER_IS_BETTER = /^(s|ms|µs|us|MB|MiB|B|bytes)$/;
/** name -> unit and every value seen per side */
const rows = new Map();
function parse(table, side) {
  for (const line of table.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || cells[1] === 'benchmark' || cells[1].startsWith('---')) continue;
    const value = Number(cells[2]);
    if (!Number.isFinite(value)) continue;
    const row = rows.get(cells[1]) ?? { unit: cells[3], values: [[], []] };
    row.values[side].push(value);
    rows.set(cells[1], row);
  }
}

for (const bench of benches) {
  for (let r = 0; r < rounds; r++) {
    for (const side of [0, 1]) {
      process.stderr.write(`round ${r + 1}/${rounds} ${side === 0 ? 'A' : 'B'} ${bench}\n`);
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', bench.replace(/\.bench\.ts$/, '')],
        { cwd: dirs[side], encoding: 'utf8', maxBuffer: 64 << 20, env: process.env });
      if (run.status !== 0) process.stderr.write(`  ${bench} failed in ${dirs[side]}: ${run.stderr.slice(-2000)}\n`);
      parse(run.stdout, side);
    }
  }
}

const best = (vals, lower) => (vals.length === 0 ? NaN : lower ? Math.min(...vals) : Math.max(...vals));
console.log(`| benchmark | unit | A (${a}) | B (${b}) | B vs A (>1 = B better) |`);
console.log('|---|---|---:|---:|---:|');
for (const [name, row] of rows) {
  const lower = LOWER_IS_BETTER.test(row.unit);
  const [va, vb] = [best(row.values[0], lower), best(row.values[1], lower)];
  const ratio = lower ? va / vb : vb / va;
  console.log(`| ${name} | ${row.unit} | ${va} | ${vb} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : ''} |`);
}
