/**
 * The README's Quick start, as a newcomer runs it: the repository cloned into an empty directory,
 * the README's first command run exactly as the README prints it (read from README.md, not
 * copied here), then `dadi` is on PATH and every step of the demo passed. The package list the
 * README shows is the one setup.sh and CI install.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, requireSystem, systemTests, tempDir } from '../helpers/env.ts';

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

/** The shell blocks of a README section, each a list of command lines (comments dropped). */
function shellBlocks(section: string): string[][] {
  const start = readme.indexOf(`## ${section}`);
  assert.ok(start >= 0, `README has a "${section}" section`);
  const end = readme.indexOf('\n## ', start + 4);
  const text = readme.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l && !l.startsWith('#')));
}

function systemPackages(): string[] {
  return readFileSync(join(repoRoot, 'scripts', 'system-packages.txt'), 'utf8').split('\n')
    .map((l) => l.replace(/#.*$/, '')).join(' ').split(/\s+/).filter(Boolean);
}

test('the Quick start is two commands: set-up-and-demo, then the test command CI runs', () => {
  const [first] = shellBlocks('Quick start');
  assert.deepEqual(first, ['./setup.sh', 'npm test']);
  const ci = readFileSync(join(repoRoot, '.ci', 'run'), 'utf8');
  assert.match(ci, /\nnpm test\n/, '.ci/run runs the README\'s test command');
  assert.match(ci, /scripts\/system-packages\.txt/, '.ci/run installs the one package list');
});

test('the README shows exactly the Debian packages setup.sh and CI install', () => {
  const apt = shellBlocks('Quick start').flat().join(' ').replace(/\\\s*/g, ' ');
  const m = /apt-get install ([^]*)$/.exec(apt);
  assert.ok(m, 'the Quick start shows the apt-get line');
  assert.deepEqual(m[1]!.split(/\s+/).filter(Boolean).sort(), systemPackages().sort());
});

test('a fresh clone: the README\'s first command sets everything up, puts dadi on PATH and the demo passes every step', { timeout: 900_000 }, async (t) => {
  if (!requireSystem(t, { commands: ['git', 'npm', 'dpkg'], root: true, paths: ['/dev/fuse'] })) return;
  if (!systemTests && !process.env.DADI_SETUP_TEST) {
    t.skip('clones and runs npm ci (minutes): runs under DADI_SYSTEM_TESTS=1 or DADI_SETUP_TEST=1');
    return;
  }
  const dir = await tempDir(t, 'dadi-setup-');
  const clone = join(dir, 'dadi');
  const bin = join(dir, 'bin');
  const git = spawnSync('git', ['clone', '--quiet', repoRoot, clone], { encoding: 'utf8' });
  assert.equal(git.status, 0, git.stderr);
  const command = shellBlocks('Quick start')[0]![0]!;
  const env: NodeJS.ProcessEnv = { ...process.env, DADI_BIN_DIR: bin, PATH: `${bin}:${process.env.PATH ?? ''}`, TMPDIR: dir };
  delete env.DADI_SYSTEM_TESTS;
  const run = spawnSync('bash', ['-c', command], { cwd: clone, env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 840_000 });
  assert.equal(run.status, 0, `${command} failed:\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-3000)}`);

  const which = spawnSync('bash', ['-c', 'command -v dadi'], { env, encoding: 'utf8' });
  assert.equal(which.stdout.trim(), join(bin, 'dadi'), 'dadi is on PATH');
  assert.equal(realpathSync(join(bin, 'dadi')), join(clone, 'bin', 'dadi.js'), 'and is the clone\'s');
  for (const step of ['registry', 'build', 'convert', 'attach', 'mount', 'list', 'read', 'fetched', 'cleanup']) {
    assert.match(run.stdout, new RegExp(`\\] ${step} `), `the demo ran its ${step} step`);
  }
  assert.doesNotMatch(run.stdout, /\] skipped /, 'as root, the demo skipped nothing');
  assert.match(run.stdout, /\] done +every step that ran passed/);
});
