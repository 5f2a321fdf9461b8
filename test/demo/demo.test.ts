/**
 * `dadi demo` run as a user would (the real CLI, real registry, converter, nbdfuse, loop device
 * and ext4 mount), each run with its own TMPDIR so that "nothing left behind" can be checked
 * exactly: no mount, loop device, process or directory that names it survives the run.
 * The --no-mount and --keep paths run in compiled.test.ts, on a build.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatEvent } from '../../src/demo/report.ts';
import { dadiArgv, repoRoot, requireSystem, runDadi } from '../helpers/env.ts';
import { assertNothingLeft, demoTmp, events, find, firstLineOfReadFile, PRIVILEGED, SIZE, SMALL } from './support.ts';

test('dadi demo --json: every step runs, the mounted tree and file match, little is fetched, nothing is left; the log renders it', { timeout: 180_000 }, async (t) => {
  if (!requireSystem(t, PRIVILEGED)) return;
  const tmp = await demoTmp(t);
  const r = await runDadi(['demo', '--json', ...SIZE], { env: { TMPDIR: tmp } });
  assert.equal(r.code, 0, r.stderr);
  const evs = events(r.stdout);
  assert.deepEqual(evs.map((e) => e.step), ['registry', 'build', 'convert-layer', 'convert-layer', 'convert-layer', 'convert',
    'attach', 'mount', 'list', 'read', 'fetched', 'cleanup', 'done']);
  const build = find(evs, 'build');
  assert.equal(build.layers.length, 3);
  assert.match(build.reference, /^127\.0\.0\.1:\d+\/demo\/app:1$/);
  const convert = find(evs, 'convert');
  assert.equal(convert.layers, 3);
  assert.ok(evs.filter((e) => e.step === 'convert-layer').every((e) => e.step === 'convert-layer' && e.how === 'converted'));
  const attach = find(evs, 'attach');
  assert.ok(attach.layerBytes < attach.imageBytes, `attach fetched ${attach.layerBytes} layer bytes of ${attach.imageBytes}`);
  const mount = find(evs, 'mount');
  assert.equal(mount.fsType, 'ext4');
  assert.ok(mount.mountPoint.startsWith(tmp));
  const list = find(evs, 'list');
  assert.equal(list.matches, true);
  assert.deepEqual(list.root, ['app', 'etc', 'lost+found', 'usr']);
  const read = find(evs, 'read');
  assert.equal(read.path, '/etc/motd');
  assert.equal(read.matches, true);
  assert.equal(read.firstLine, await firstLineOfReadFile());
  const fetched = find(evs, 'fetched');
  assert.ok(fetched.bytes > 0 && fetched.bytes < fetched.imageBytes, `fetched ${fetched.bytes} of ${fetched.imageBytes}`);
  assert.ok(fetched.cacheHits + fetched.cacheMisses > 0);
  assert.deepEqual(fetched.layers.map((l) => l.layer), [0, 1, 2]);
  for (const l of fetched.layers) assert.ok(l.fetchedBytes <= l.blobBytes, JSON.stringify(l));
  const base = fetched.layers[0]!;
  assert.ok(base.fetchedBytes < base.blobBytes / 2, `layer 0: fetched ${base.fetchedBytes} of ${base.blobBytes}`);
  assert.equal(fetched.bytes, fetched.layers.reduce((n, l) => n + l.fetchedBytes, 0) + attach.fetchedBytes - attach.layerBytes);
  const cleanup = find(evs, 'cleanup');
  assert.ok(cleanup.undone.some((u) => u.startsWith(`unmounted ${mount.mountPoint}`)), cleanup.undone.join(', '));
  assert.ok(cleanup.undone.includes('stopped the NBD server') && cleanup.undone.includes('stopped the registry'));
  const done = find(evs, 'done');
  assert.equal(done.ok, true);
  assert.deepEqual(done.skipped, []);
  await assertNothingLeft(tmp);

  // The same events as the human-readable log renders them.
  const log = evs.map((e) => formatEvent(e, 1.5)).join('\n');
  for (const step of ['registry', 'build', 'convert', 'attach', 'mount', 'list', 'read', 'fetched', 'cleanup', 'done']) {
    assert.match(log, new RegExp(`^\\[  1\\.5 s\\] ${step} `, 'm'), `no ${step} line in:\n${log}`);
  }
  assert.match(log, /attached .* lazily in [\d.]+ m?s: 3 layers/);
  assert.ok(log.includes(`/etc/motd: ${JSON.stringify(read.firstLine)}`), log);
  assert.match(log, /identical to the generated file/);
  assert.match(log, /matches the generated image/);
  assert.match(log, /\] fetched +[\d.]+[KM]?i?B from the registry in \d+ requests = [\d.]+% of the [\d.]+MiB image; block cache \d+ hits/);
  assert.match(log, /layer 0: [\d.]+[KM]?i?B of its [\d.]+MiB blob/);
  assert.match(log, /\] done +every step that ran passed/);
});

test('dadi demo whose mount fails: exits 1 naming the step, and still detaches, stops and removes everything', { timeout: 180_000 }, async (t) => {
  if (!requireSystem(t, PRIVILEGED)) return;
  const tmp = await demoTmp(t);
  // mount(8) refuses only the demo's read-only mount; the converter's read-write ones go through.
  const bin = join(tmp, 'bin');
  await mkdir(bin);
  const realMount = spawnSync('sh', ['-c', 'command -v mount'], { encoding: 'utf8' }).stdout.trim();
  await writeFile(join(bin, 'mount'), `#!/bin/sh\ncase "$*" in *"-o ro"*) echo "mount: injected failure" >&2; exit 32;; esac\nexec ${realMount} "$@"\n`, { mode: 0o755 });
  const r = await runDadi(['demo', '--json', ...SMALL], { env: { TMPDIR: tmp, PATH: `${bin}:${process.env.PATH ?? ''}` } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^dadi: mount: mount -t ext4 -o ro \S+ \S+ failed \(exit 32\): mount: injected failure/m);
  const evs = events(r.stdout);
  assert.deepEqual(evs.map((e) => e.step).slice(-2), ['attach', 'cleanup']);
  const cleanup = find(evs, 'cleanup');
  assert.ok(cleanup.undone.some((u) => /^detached \/dev\/\w+/.test(u)), cleanup.undone.join(', '));
  for (const u of ['stopped the NBD server', 'closed the image', 'stopped the registry']) assert.ok(cleanup.undone.includes(u), cleanup.undone.join(', '));
  await assertNothingLeft(tmp, { keptDir: bin });
});

test('dadi demo without nbdfuse: converts and attaches, names what mounting needs, reads the image without a mount, exits 0', { timeout: 120_000 }, async (t) => {
  const tmp = await demoTmp(t);
  // A PATH with every tool the privileged steps use except nbdfuse.
  const bin = join(tmp, 'bin');
  await mkdir(bin);
  for (const tool of ['mount', 'umount', 'losetup', 'fusermount3', 'mkfs.ext4']) {
    const where = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (where) await symlink(where, join(bin, tool));
  }
  const r = await runDadi(['demo', ...SMALL], { env: { TMPDIR: tmp, PATH: bin, DADI_ATTACH: 'nbdfuse' } });
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.toString('utf8');
  assert.match(out, /\] registry +embedded registry on http:\/\/127\.0\.0\.1:\d+/);
  assert.match(out, /\] build +OCI image of 3 gzip layers/);
  assert.match(out, /\] convert +3 layers into /);
  assert.match(out, /\] attach +attached /);
  assert.match(out, /\] skipped +mount: this host cannot mount block devices; listing and reading through dadi's userspace ext4 reader instead/);
  assert.match(out, /missing: nbdfuse \(apt-get install libnbd-bin\)/);
  assert.doesNotMatch(out, /missing: (mkfs\.ext4|losetup|fusermount3)/);
  assert.match(out, /\] list +\d+ entries; .*\(userspace ext4 reader, no mount\) \(\d+ m?s\)\n +the tree .* matches the generated image/);
  assert.match(out, /\] read +\/etc\/motd: .*\n +\d+ bytes, identical to the generated file/);
  assert.match(out, /\] done +every step that ran passed .*; skipped mount/);
  assert.doesNotMatch(out, /\] mount +/);
  await assertNothingLeft(tmp, { keptDir: bin });
});

test('dadi demo as an unprivileged user: converts and reads the image rootless, says mounting needs root, exits 0', { timeout: 120_000 }, async (t) => {
  if (!requireSystem(t, { root: true, commands: ['setpriv'] })) return;
  const tmp = await demoTmp(t);
  await import('node:fs/promises').then((fs) => fs.chmod(tmp, 0o777));
  const [node, args] = dadiArgv(['demo', '--json', ...SMALL]);
  const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', '--', node, ...args], {
    cwd: repoRoot, env: { ...process.env, TMPDIR: tmp, HOME: tmp }, encoding: 'buffer', timeout: 110_000,
  });
  assert.equal(r.status, 0, r.stderr.toString());
  const evs = events(r.stdout);
  assert.deepEqual(evs.map((e) => e.step), ['registry', 'build', 'convert-layer', 'convert-layer', 'convert-layer', 'convert',
    'attach', 'skipped', 'list', 'read', 'fetched', 'cleanup', 'done']);
  const mount = find(evs, 'skipped');
  assert.ok(mount.what === 'mount' && mount.missing?.some((m) => m.startsWith('root')), JSON.stringify(mount));
  assert.deepEqual([find(evs, 'list').matches, find(evs, 'read').matches], [true, true]);
  assert.equal(find(evs, 'done').ok, true);
  await assertNothingLeft(tmp);
});

test('dadi demo as root without CAP_SYS_ADMIN (a container): converts, names the capability mounting needs, exits 0', { timeout: 120_000 }, async (t) => {
  if (!requireSystem(t, { root: true, commands: ['setpriv'] })) return;
  const tmp = await demoTmp(t);
  const [node, args] = dadiArgv(['demo', '--json', ...SMALL]);
  const r = spawnSync('setpriv', ['--bounding-set=-sys_admin', '--inh-caps=-sys_admin', '--', node, ...args], {
    cwd: repoRoot, env: { ...process.env, TMPDIR: tmp }, encoding: 'buffer', timeout: 110_000,
  });
  assert.equal(r.status, 0, r.stderr.toString());
  const evs = events(r.stdout);
  assert.ok(evs.some((e) => e.step === 'convert'), 'converting needs no capability');
  const mount = find(evs, 'skipped');
  assert.equal(mount.what, 'mount');
  assert.ok(mount.missing?.some((m) => m.startsWith('CAP_SYS_ADMIN')), JSON.stringify(mount));
  await assertNothingLeft(tmp);
});

test('dadi demo interrupted by Ctrl-C (SIGINT to its process group) while converting: exits 130 after undoing everything', { timeout: 180_000 }, async (t) => {
  if (!requireSystem(t, PRIVILEGED)) return;
  const tmp = await demoTmp(t);
  const [node, args] = dadiArgv(['demo', '--json', ...SMALL]);
  // Its own process group, signalled as a whole like a terminal's Ctrl-C: the tools a step runs
  // (mkfs, mount, losetup) get the signal too.
  const child = spawn(node, args, { cwd: repoRoot, env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    // The image is built and pushed: conversion (seconds, with a mount) is under way.
    if (!sent && stdout.includes('"step":"build"')) {
      sent = true;
      process.kill(-child.pid!, 'SIGINT');
    }
  });
  const code = await new Promise<number | null>((res) => child.on('close', res));
  assert.ok(sent, stdout);
  assert.equal(code, 130, stderr);
  assert.match(stderr, /stopping after the current step, then cleaning up/);
  assert.match(stderr, /interrupted; everything the demo started has been cleaned up/);
  const evs = events(Buffer.from(stdout));
  // Stopped inside the converter (which then unmounted its own stack), not after it.
  assert.ok(!evs.some((e) => e.step === 'convert' || e.step === 'done'), stdout);
  assert.equal(evs.at(-1)?.step, 'cleanup');
  await assertNothingLeft(tmp);
});

test('dadi demo whose output is closed early (| head -1) stops and cleans up instead of crashing', { timeout: 180_000 }, async (t) => {
  if (!requireSystem(t, PRIVILEGED)) return;
  const tmp = await demoTmp(t);
  const [node, args] = dadiArgv(['demo', '--json', ...SMALL]);
  const child = spawn(node, args, { cwd: repoRoot, env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  let first = '';
  child.stdout.on('data', (d: Buffer) => {
    first += d.toString();
    if (first.includes('\n')) child.stdout.destroy();
  });
  const code = await new Promise<number | null>((res) => child.on('close', res));
  assert.match(first, /^\{"step":"registry"/);
  assert.equal(code, 130, stderr);
  assert.match(stderr, /standard output failed \(EPIPE\); stopping after the current step, then cleaning up/);
  assert.doesNotMatch(stderr, /Unhandled|at \S+ \(/);
  await assertNothingLeft(tmp);
});

test('dadi demo --help describes the steps, options and prerequisites', async () => {
  const r = await runDadi(['demo', '--help']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.toString('utf8');
  for (const opt of ['--keep', '--json', '--no-mount', '--binary-size <size>']) assert.ok(out.includes(opt), out);
  assert.match(out, /Converting needs no privilege/);
  assert.match(out, /Without them\s+the demo says what it skipped and why, lists\s+and reads the image through the userspace ext4 reader instead, and still exits 0/);
});
