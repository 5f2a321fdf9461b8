#!/usr/bin/env node
// Runs every test/**/*.test.ts with node:test through tsx (Node 20's --test takes no globs).
// Extra arguments filter test files by substring: `node scripts/run-tests.mjs zfile lsmt`.
//
// Around the run it takes a census of what tests could leave behind (listening TCP ports, mounts,
// loop devices, helper processes, entries in the temporary directory) and prints what is new
// afterwards; with DADI_LEAK_CHECK=fail (set by .ci/run) anything left fails the run.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir) {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const read = (p) => { try { return readFileSync(p, 'utf8'); } catch { return ''; } };

/** Listening TCP sockets (v4 and v6) as "addr:port". */
function listeningPorts() {
  const out = new Set();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of read(f).split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') out.add(`${cols[1]}`); // 0A = LISTEN; local address in hex
    }
  }
  return out;
}

function mounts() {
  return new Set(read('/proc/self/mountinfo').split('\n').filter(Boolean).map((l) => l.split(' ')[4]));
}

function loopDevices() {
  const out = new Set();
  let names = [];
  try { names = readdirSync('/sys/block').filter((n) => n.startsWith('loop')); } catch { /* no sysfs */ }
  for (const n of names) {
    const backing = read(`/sys/block/${n}/loop/backing_file`).trim();
    if (backing) out.add(`/dev/${n} <- ${backing}`);
  }
  return out;
}

const HELPERS = /(nbdfuse|nbdkit|qemu-nbd|docker-registry|containerd|dadi (serve|snapshotter|p2p)|cli\/main\.(ts|js) (serve|snapshotter|p2p))/;
function helperProcesses() {
  const out = new Set();
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const cmd = read(`/proc/${pid}/cmdline`).replace(/\0/g, ' ').trim();
    if (cmd && HELPERS.test(cmd)) out.add(`${pid} ${cmd.slice(0, 160)}`);
  }
  return out;
}

function tempEntries() {
  try { return new Set(readdirSync(tmpdir())); } catch { return new Set(); }
}

function census() {
  return { 'listening TCP sockets': listeningPorts(), mounts: mounts(), 'loop devices': loopDevices(),
    'helper processes': helperProcesses(), [`entries in ${tmpdir()}`]: tempEntries() };
}

const filters = process.argv.slice(2);
const files = walk('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const before = census();
const r = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${process.env.DADI_TEST_CONCURRENCY ?? 2}`, ...files],
  { stdio: 'inherit' });

// Give processes stopped at the very end a moment to exit.
spawnSync('sleep', ['1']);
const after = census();
const leaks = [];
for (const [what, now] of Object.entries(after)) {
  const fresh = [...now].filter((x) => !before[what].has(x));
  if (fresh.length > 0) leaks.push(`${what}: ${fresh.join('; ')}`);
}
if (leaks.length > 0) {
  const strict = process.env.DADI_LEAK_CHECK === 'fail';
  console.error(`\n${strict ? 'FAIL' : 'warning'}: left behind by the test run (new since it started):\n  ${leaks.join('\n  ')}`);
  if (strict) process.exit(r.status || 1);
} else {
  console.error('\nleak check: no port, mount, loop device, helper process or temporary entry was left behind');
}
process.exit(r.status ?? 1);
