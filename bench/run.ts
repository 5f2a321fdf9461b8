/**
 * `npm run bench`: runs every bench/*.bench.ts (or those whose name contains an argument) and
 * prints one table: each figure, the peer's figure from the same run on the same input, and the
 * ratio. A bench module exports `run(): Promise<BenchRow[]>`.
 */
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  /** The peer measured in the same run on the same input, when one exists. */
  peer?: { name: string; value: number };
  /** For "lower is better" units such as seconds. */
  lowerIsBetter?: boolean;
  note?: string;
}

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();

const rows: BenchRow[] = [];
for (const f of files) {
  process.stderr.write(`bench ${f} ...\n`);
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { run(): Promise<BenchRow[]> };
  try {
    const got = await mod.run();
    for (const r of got) process.stderr.write(`  ${r.name}: ${fmt(r.value)} ${r.unit}\n`);
    rows.push(...got);
  } catch (err) {
    process.stderr.write(`  FAILED: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  }
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3);
}

console.log('| benchmark | dadi | unit | peer | peer figure | ratio (dadi/peer, >1 = dadi better) |');
console.log('|---|---:|---|---|---:|---:|');
for (const r of rows) {
  const ratio = r.peer ? (r.lowerIsBetter ? r.peer.value / r.value : r.value / r.peer.value) : undefined;
  console.log(`| ${r.name} | ${fmt(r.value)} | ${r.unit} | ${r.peer?.name ?? ''} | ${r.peer ? fmt(r.peer.value) : ''} | ${ratio ? ratio.toFixed(2) : ''} |${r.note ? ' ' + r.note : ''}`);
}
