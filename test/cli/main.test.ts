/**
 * The command line's error contract: one line on stderr, `dadi: <what> (see '<command> --help')`,
 * exit status 2 for a mistake in the command line (an unknown flag is named even when a required
 * one is missing too), 1 for a failure, with causes named once and the internals only under
 * --verbose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runDadi, tempDir, vector } from '../helpers/env.ts';

test('dadi --help lists the commands and exits 0', async () => {
  const r = await runDadi(['--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /Usage: dadi/);
});

test('an unknown command exits 2 with one line naming it', async () => {
  const r = await runDadi(['no-such-command']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^dadi: unknown command 'no-such-command' \(see 'dadi --help'\)\n$/);
});

test('flag mistakes are one line naming the flag and the help to read, exit status 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--frobnicate'], /^dadi: unknown option '--frobnicate' \(see 'dadi --help'\)\n$/],
    [['serve', '--bogus', 'x'], /^dadi: unknown option '--bogus' \(see 'dadi serve --help'\)\n$/],
    [['serve', vector('A.lsmt')], /^dadi: --listen is required \(see 'dadi serve --help'\)\n$/],
    [['layer', 'create', 'd', 'i'], /^dadi: --size is required \(see 'dadi layer create --help'\)\n$/],
    [['layer', 'crate'], /^dadi: unknown command 'crate' \(Did you mean create\?\) \(see 'dadi layer --help'\)\n$/],
    [['registry', 'serve'], /^dadi: --root is required \(see 'dadi registry serve --help'\)\n$/],
    [['zfile', 'compress', 'in'], /^dadi: missing required argument 'out' \(see 'dadi zfile compress --help'\)\n$/],
    [['cat'], /^dadi: give at least one layer, or --upper DATA,INDEX .*\(see 'dadi cat --help'\)\n$/],
  ];
  for (const [args, want] of cases) {
    const r = await runDadi(args);
    assert.equal(r.code, 2, `dadi ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want, `dadi ${args.join(' ')}`);
  }
});

test('failures name their cause once: a directory given as a layer, a CRC error from dadi cat', async (t) => {
  let r = await runDadi(['layer', 'info', '/etc']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: \/etc: is a directory, not a file\n$/);

  const dir = await tempDir(t);
  const bad = join(dir, 'bad.zlsmt');
  await copyFile(vector('A.zstd.bs4.zlsmt'), bad);
  const fh = await import('node:fs/promises').then((fs) => fs.open(bad, 'r+'));
  await fh.write(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, 20_000);
  await fh.close();
  r = await runDadi(['cat', bad, '-o', join(dir, 'out')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: EIO: \S*bad\.zlsmt: at offset \d+: block \d+: CRC mismatch \(stored 0x[0-9a-f]+, computed 0x[0-9a-f]+\) \(while reading \d+ bytes of layer data at byte \d+\)\n$/);
  assert.equal(r.stderr.split('bad.zlsmt').length - 1, 1, 'the file is named once');
});

test('dadi cat --upper DATA,INDEX alone: a writable layer is a stack by itself', async (t) => {
  const dir = await tempDir(t);
  const [data, index] = [join(dir, 'd'), join(dir, 'i')];
  let r = await runDadi(['layer', 'create', data, index, '--size', '64K']);
  assert.equal(r.code, 0, r.stderr);
  await writeFile(join(dir, 'x'), '');
  r = await runDadi(['cat', '--upper', `${data},${index}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.length, 64 * 1024);
  assert.ok(r.stdout.every((b) => b === 0));
});
