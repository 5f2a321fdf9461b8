#!/usr/bin/env node
// Runs the compiled CLI when it is built and current (npm ci runs `prepare`), else the TypeScript
// sources through tsx, so a checkout works before and without a build, and an edit to src/ is
// never shadowed by an older dist/.
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'cli', 'main.js');

/** Newest modification time under a directory (a checkout's src/ is ~200 files: a few ms). */
function newestMtime(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : lstatSync(p).mtimeMs);
  }
  return newest;
}

function useCompiled() {
  if (process.env.DADI_FROM_SOURCE || !existsSync(compiled)) return false;
  const src = join(root, 'src');
  return !existsSync(src) || newestMtime(src) <= statSync(compiled).mtimeMs;
}

let entry = compiled;
if (!useCompiled()) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = join(root, 'src', 'cli', 'main.ts');
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
