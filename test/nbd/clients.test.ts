/**
 * The server against real NBD clients (libnbd's nbdinfo/nbdcopy, qemu-img, qemu-io, fio's nbd
 * engine) over an in-memory disk whose bytes are known.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { patternBytes, startServer } from './serve-helpers.ts';
import { qemuIo, qemuIoWorkload, run } from './tools.ts';

const MiB = 1024 * 1024;

/** 16 MiB: pattern data with a hole in the middle and a zeroed tail. */
function knownImage(): Buffer {
  const img = Buffer.alloc(16 * MiB);
  patternBytes(6 * MiB, 11).copy(img, 0);
  patternBytes(3 * MiB, 12).copy(img, 10 * MiB);
  return img;
}

test('nbdinfo sees the size, flags, block sizes and base:allocation', async (t) => {
  if (!requireSystem(t, { commands: ['nbdinfo'] })) return;
  const rw = await startServer(t, new MemoryDisk(16 * MiB), { exportName: 'rw', description: 'writable test disk' });
  const info = JSON.parse((await run('nbdinfo', ['--json', rw.uri])).stdout);
  const e = info.exports[0];
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.structured, true);
  assert.equal(e['export-name'], 'rw');
  assert.equal(e.description, 'writable test disk');
  assert.equal(e['export-size'], 16 * MiB);
  assert.equal(e.is_read_only, false);
  assert.equal(e.can_multi_conn, true);
  assert.equal(e.can_flush, true);
  assert.equal(e.can_fua, true);
  assert.equal(e.can_trim, true);
  assert.equal(e.can_zero, true);
  assert.equal(e.can_cache, true);
  assert.equal(e.can_df, true);
  assert.deepEqual([e.block_size_minimum, e.block_size_preferred, e.block_size_maximum], [512, 4096, 32 * MiB]);
  assert.ok(e.contexts.includes('base:allocation'));

  const ro = await startServer(t, MemoryDisk.from(knownImage(), { readOnly: true }));
  const roInfo = JSON.parse((await run('nbdinfo', ['--json', ro.uri])).stdout).exports[0];
  assert.equal(roInfo.is_read_only, true);
  assert.equal(roInfo.can_trim, false);
  assert.equal(roInfo.can_zero, false);
  assert.equal(roInfo.can_multi_conn, true);

  const map = JSON.parse((await run('nbdinfo', ['--map', '--json', ro.uri])).stdout) as Array<{ offset: number; length: number; type: number }>;
  const holes = map.filter((m) => (m.type & 1) !== 0).map((m) => [m.offset, m.length]);
  assert.deepEqual(holes, [[6 * MiB, 4 * MiB], [13 * MiB, 3 * MiB]]);
});

test('nbdcopy and qemu-img compare read exactly the disk bytes, in and out', async (t) => {
  if (!requireSystem(t, { commands: ['nbdcopy', 'qemu-img'] })) return;
  const dir = await tempDir(t);
  const img = knownImage();
  const src = await startServer(t, MemoryDisk.from(img, { readOnly: true }));
  const out = join(dir, 'out.raw');
  await run('nbdcopy', [src.uri, out]);
  assert.ok((await readFile(out)).equals(img));
  await run('nbdcopy', ['--no-extents', '--connections=4', src.uri, join(dir, 'out2.raw')]);
  assert.ok((await readFile(join(dir, 'out2.raw'))).equals(img));
  const { stdout } = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', out, src.uri]);
  assert.match(stdout, /identical/);

  // Upload through the server, multi-connection, then compare.
  const dst = new MemoryDisk(16 * MiB);
  const sink = await startServer(t, dst);
  await writeFile(join(dir, 'in.raw'), img);
  await run('nbdcopy', ['--connections=4', join(dir, 'in.raw'), sink.uri]);
  const back = Buffer.alloc(16 * MiB);
  await dst.read(back, 0);
  assert.ok(back.equals(img));
  await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(dir, 'in.raw'), sink.uri]);
});

test('qemu-io random writes, zeroes and discards read back their patterns', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const disk = new MemoryDisk(32 * MiB);
  const { uri } = await startServer(t, disk);
  const { writes, verifies } = qemuIoWorkload(32 * MiB, 120, 77);
  await qemuIo(uri, [...writes, 'flush']);
  await qemuIo(uri, verifies);
  await qemuIo(uri, ['write -z 0 1M', 'read -P 0 0 1M', 'discard 1M 1M', 'read -P 0 1M 1M',
    'write -P 0x42 -f 2M 64k', 'aio_write -P 0x43 3M 64k', 'aio_write -P 0x44 4M 64k', 'aio_flush',
    'read -P 0x43 3M 64k', 'read -P 0x44 4M 64k', 'write -P 0x7 1000 3000', 'read -P 0x7 1000 3000']);
});

test('fio --ioengine=nbd random read/write with crc32c verification', async (t) => {
  if (!requireSystem(t, { commands: ['fio'] })) return;
  const { uri } = await startServer(t, new MemoryDisk(32 * MiB));
  const { stdout } = await run('fio', ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randrw', '--bs=4k',
    '--iodepth=16', '--size=32M', '--verify=crc32c', '--verify_state_save=0', '--do_verify=1', '--output-format=json'], 120_000);
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  assert.equal(job.error, 0);
  assert.ok(job.write.io_bytes > 0 && job.read.io_bytes > 0);
});
