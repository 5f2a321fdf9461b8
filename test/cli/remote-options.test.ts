/**
 * The registry flags `dadi serve` and `dadi mount` share: parsed into attach options with clear
 * errors, and re-emitted for the server `dadi mount` starts so that it sees the same values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { resolve } from 'node:path';
import { addRemoteOptions, remoteFlagArgs, remoteImageOptions, type RemoteFlags } from '../../src/cli/remote-options.ts';

function parse(argv: string[]): RemoteFlags {
  const cmd = addRemoteOptions(new Command('x').exitOverride()).argument('[rest...]');
  cmd.parse(argv, { from: 'user' });
  return cmd.opts<RemoteFlags>();
}

test('registry flags become attach options: cache dir made absolute, sizes parsed, background settings', async () => {
  const opts = await remoteImageOptions(parse(['--cache-dir', 'rel/cache', '--cache-size', '512M', '--refill-unit', '1M',
    '--insecure', '--platform', 'linux/arm64', '--background-delay', '2', '--background-rate', '8M']));
  assert.equal(opts.cacheDir, resolve('rel/cache'));
  assert.equal(opts.cacheCapacity, 512 * 1024 ** 2);
  assert.equal(opts.refillUnit, 1024 ** 2);
  assert.equal(opts.insecure, true);
  assert.deepEqual(opts.platform, { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(opts.background, { enable: true, delayMs: 2000, maxBytesPerSec: 8 * 1024 ** 2 });
});

test('defaults: no cache cap or dir given, background after 30 s at 32 MiB/s; --no-background turns it off', async () => {
  const opts = await remoteImageOptions(parse([]));
  assert.equal(opts.cacheCapacity, undefined);
  assert.equal(opts.cacheDir, undefined);
  assert.deepEqual(opts.background, { enable: true, delayMs: 30_000, maxBytesPerSec: 32 * 1024 ** 2 });
  assert.equal((await remoteImageOptions(parse(['--no-background']))).background?.enable, false);
});

test('bad values are refused naming the flag and the value', async () => {
  await assert.rejects(remoteImageOptions(parse(['--cache-size', '0'])), /--cache-size 0: expected a size above zero/);
  await assert.rejects(remoteImageOptions(parse(['--cache-size', 'lots'])), /lots/);
  await assert.rejects(remoteImageOptions(parse(['--background-delay', '-1'])), /--background-delay -1/);
  await assert.rejects(remoteImageOptions(parse(['--background-rate', 'fast'])), /fast/);
});

test('the flags re-emitted for the mount\'s server parse back to the same options', async () => {
  const flags = parse(['--cache-dir', 'c', '--cache-size', '2G', '--insecure', '--platform', 'linux/amd64',
    '--refill-unit', '512K', '--no-background', '--background-delay', '5', '--background-rate', '1M']);
  const again = parse(remoteFlagArgs(flags));
  assert.deepEqual(await remoteImageOptions(again), await remoteImageOptions(flags));
});
