#!/usr/bin/env node
// Runs the compiled CLI when it was built (npm ci runs `prepare`), else the TypeScript sources
// through tsx, so a checkout works before and without a build.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'cli', 'main.js');
let entry = compiled;
if (!existsSync(compiled) || process.env.DADI_FROM_SOURCE) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = join(root, 'src', 'cli', 'main.ts');
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
