/**
 * `dadi serve` as a process: writable stacks survive restarts and kill -9 after FLUSH (qemu-io,
 * fio verify), SIGTERM/SIGINT drain and exit 0, bad arguments fail clearly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { requireSystem, runDadi, tempDir, vector } from '../helpers/env.ts';
import { startServe } from './serve-process.ts';
import { qemuIo, qemuIoWorkload, run } from './tools.ts';

test('qemu-io writes on a writable stack persist across a SIGTERM restart', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const dir = await tempDir(t);
  const sock = join(dir, 'nbd.sock');
  const rw = await tempDir(t);
  const pidFile = join(dir, 'serve.pid');
  const args = [vector('A.lsmt'), '--writable', rw, '--listen', `unix:${sock}`, '--pid-file', pidFile];
  const first = await startServe(t, args);
  assert.equal(first.info.writable, true);
  assert.equal(Number(await readFile(pidFile, 'utf8')), first.info.pid);
  const { writes, verifies } = qemuIoWorkload(64 * 1024 * 1024, 150, 4242);
  await qemuIo(first.info.uri, writes);
  await qemuIo(first.info.uri, verifies);
  // Layer A's first 4 KiB is payload.bin[0:4096]: the lower still shows through where nothing was written.
  const payload = await readFile(vector('payload.bin'));
  const a0 = payload.subarray(0, 4096);
  assert.equal(await first.stop('SIGTERM'), 0, first.stderr());
  await assert.rejects(stat(pidFile), 'the pid file is removed on exit');
  await assert.rejects(stat(sock), 'the socket is removed on exit');

  const second = await startServe(t, args);
  await qemuIo(second.info.uri, verifies);
  const head = await qemuIo(second.info.uri, ['read -v 0 16']);
  assert.ok(head.includes(Array.from(a0.subarray(0, 4)).map((b) => b.toString(16).padStart(2, '0')).join(' ')), head);
  assert.equal(await second.stop('SIGINT'), 0);
});

test('fio randrw with crc32c verify, then --verify_only after a restart (fio fails on any mismatch)', async (t) => {
  if (!requireSystem(t, { commands: ['fio'] })) return;
  const dir = await tempDir(t);
  const rw = await tempDir(t);
  const args = ['--writable', rw, '--size', '64M', '--listen', `unix:${join(dir, 'nbd.sock')}`];
  const job = (uri: string, extra: string[]) => ['--name=dadi', '--ioengine=nbd', `--uri=${uri}`, '--rw=randrw', '--bs=4k',
    '--iodepth=16', '--size=64M', '--io_size=24M', '--randseed=99', '--verify=crc32c', '--verify_state_save=0', '--output-format=json', ...extra];
  const first = await startServe(t, args);
  assert.equal(first.info.size, 64 * 1024 * 1024);
  const r1 = JSON.parse((await run('fio', job(first.info.uri, ['--do_verify=1']), 120_000)).stdout.replace(/^[^{]*/, '')).jobs[0];
  assert.equal(r1.error, 0);
  assert.ok(r1.write.io_bytes > 8 * 1024 * 1024 && r1.read.io_bytes > 8 * 1024 * 1024);
  assert.equal(await first.stop(), 0);

  const second = await startServe(t, args);
  const r2 = JSON.parse((await run('fio', job(second.info.uri, ['--verify_only']), 120_000)).stdout.replace(/^[^{]*/, '')).jobs[0];
  assert.equal(r2.error, 0);
  assert.ok(r2.read.io_bytes >= r1.write.io_bytes, 'verify_only read back every written block');
});

test('writes acknowledged after FLUSH survive kill -9 of dadi serve', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const dir = await tempDir(t);
  const rw = await tempDir(t);
  const args = [vector('A.zstd.bs4.zlsmt'), '--writable', rw, '--listen', `unix:${join(dir, 'nbd.sock')}`];
  const first = await startServe(t, args);
  const { writes, verifies } = qemuIoWorkload(256 * 1024 * 1024, 200, 9001);
  await qemuIo(first.info.uri, [...writes, 'flush']);
  // FUA writes are durable on their own.
  await qemuIo(first.info.uri, ['write -f -P 0x77 900M 128k']);
  assert.equal(await first.stop('SIGKILL'), 'SIGKILL');

  const second = await startServe(t, args);
  await qemuIo(second.info.uri, [...verifies, 'read -P 0x77 900M 128k']);
  assert.equal(await second.stop(), 0);
});

test('dadi serve refuses bad arguments with clear errors', async (t) => {
  const dir = await tempDir(t);
  const bad = await runDadi(['serve', vector('A.lsmt'), '--listen', 'udp:1.2.3.4:5']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /not a listen address: "udp:1\.2\.3\.4:5"/);
  const missing = await runDadi(['serve', join(dir, 'nope.lsmt'), '--listen', `unix:${join(dir, 's')}`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.lsmt: no such layer file/);
  const noSize = await runDadi(['serve', '--writable', dir, '--listen', `unix:${join(dir, 's')}`]);
  assert.equal(noSize.code, 1);
  assert.match(noSize.stderr, /needs --size/);
});

test('--ready-fd is written once the socket accepts connections; TCP port 0 reports the real port', async (t) => {
  if (!requireSystem(t, { commands: ['nbdinfo'] })) return;
  const { spawn } = await import('node:child_process');
  const { dadiArgv } = await import('../helpers/env.ts');
  const [cmd, argv] = dadiArgv(['serve', vector('A.lsmt'), '--listen', 'tcp:127.0.0.1:0', '--ready-fd', '3']);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'ignore', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let ready = '';
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise<void>((resolve) => {
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => { ready += d.toString(); });
    (child.stdio[3] as NodeJS.ReadableStream).on('end', () => resolve());
  });
  assert.equal(ready, 'ready\n');
  const m = /listening on tcp:127\.0\.0\.1:(\d+) \((nbd:\/\/127\.0\.0\.1:\d+\/)\), 1073741824 bytes, read-only/.exec(out);
  assert.ok(m, out);
  assert.notEqual(Number(m[1]), 0);
  const size = (await run('nbdinfo', ['--size', m[2]!])).stdout.trim();
  assert.equal(size, '1073741824');
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
