import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import { RawClient, infoData, metaData } from './raw-client.ts';
import { startServer } from './serve-helpers.ts';

const MiB = 1024 * 1024;
const ACK = 1, SERVER = 2, INFO = 3, META = 4;
const ERR_UNSUP = 0x80000001, ERR_INVALID = 0x80000003, ERR_UNKNOWN = 0x80000006;
const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED: 8, LIST_META: 9, SET_META: 10 };

async function client(t: import('node:test').TestContext, disk = new MemoryDisk(8 * MiB), name = 'exp') {
  const { path, server } = await startServer(t, disk, { exportName: name, description: 'a test export' });
  const c = await RawClient.connect(path);
  t.after(() => c.destroy());
  return { c, server };
}

test('greeting offers fixed newstyle and no-zeroes; EXPORT_NAME answers size and flags', async (t) => {
  const { c } = await client(t);
  assert.equal(await c.greeting(), 3);
  c.sendClientFlags(3);
  c.sendOption(OPT.EXPORT_NAME, Buffer.from('exp'));
  const r = await c.read(10);
  assert.equal(r.readBigUInt64BE(0), BigInt(8 * MiB));
  const flags = r.readUInt16BE(8);
  assert.equal(flags & 1, 1, 'HAS_FLAGS');
  assert.equal(flags & 2, 0, 'not read-only');
  assert.equal(flags & (1 << 8), 1 << 8, 'CAN_MULTI_CONN');
  assert.equal(flags & (1 << 7), 0, 'no DF without structured replies');
  assert.equal(await c.closesWithin(100), false);
});

test('EXPORT_NAME without NO_ZEROES pads with 124 zero bytes; a non-fixed client may only use EXPORT_NAME', async (t) => {
  const { c } = await client(t);
  await c.greeting();
  c.sendClientFlags(0);
  c.sendOption(OPT.EXPORT_NAME, Buffer.alloc(0)); // the empty name is the default export
  const r = await c.read(134);
  assert.equal(r.readBigUInt64BE(0), BigInt(8 * MiB));
  assert.ok(r.subarray(10).every((b) => b === 0));

  const { c: c2 } = await client(t);
  await c2.greeting();
  c2.sendClientFlags(0);
  c2.sendOption(OPT.LIST);
  assert.equal(await c2.closesWithin(2000), true, 'option haggling needs fixed newstyle');
});

test('unknown client flags and unknown export names end the connection', async (t) => {
  const { c } = await client(t);
  await c.greeting();
  c.sendClientFlags(1 | 8);
  assert.equal(await c.closesWithin(2000), true);

  const { c: c2 } = await client(t);
  await c2.greeting();
  c2.sendClientFlags(1);
  c2.sendOption(OPT.EXPORT_NAME, Buffer.from('nope'));
  assert.equal(await c2.closesWithin(2000), true);

  const { c: c3 } = await client(t);
  await c3.greeting();
  c3.sendClientFlags(1);
  c3.write(Buffer.from('NBDMAGIC-not-an-option'));
  assert.equal(await c3.closesWithin(2000), true, 'option without IHAVEOPT');
});

test('LIST names the export and its description; LIST with data is invalid', async (t) => {
  const { c } = await client(t);
  await c.greeting();
  c.sendClientFlags(3);
  const list = await c.option(OPT.LIST);
  assert.deepEqual(list.map((r) => r.type), [SERVER, ACK]);
  const d = list[0]!.data;
  const nameLength = d.readUInt32BE(0);
  assert.equal(d.toString('utf8', 4, 4 + nameLength), 'exp');
  assert.equal(d.toString('utf8', 4 + nameLength), 'a test export');
  const bad = await c.option(OPT.LIST, Buffer.from('x'));
  assert.equal(bad[0]!.type, ERR_INVALID);
});

test('INFO reports export size/flags, name, description and block sizes, and negotiation continues', async (t) => {
  const { c } = await client(t, new MemoryDisk(4 * MiB, { readOnly: true }));
  await c.greeting();
  c.sendClientFlags(3);
  const replies = await c.option(OPT.INFO, infoData('exp', [1, 2, 3]));
  assert.equal(replies[replies.length - 1]!.type, ACK);
  const infos = new Map(replies.filter((r) => r.type === INFO).map((r) => [r.data.readUInt16BE(0), r.data.subarray(2)]));
  const exp = infos.get(0)!;
  assert.equal(exp.readBigUInt64BE(0), BigInt(4 * MiB));
  const flags = exp.readUInt16BE(8);
  assert.equal(flags & 2, 2, 'READ_ONLY');
  assert.equal(flags & ((1 << 3) | (1 << 5) | (1 << 6)), 0, 'no FUA/TRIM/WRITE_ZEROES on a read-only export');
  assert.equal(infos.get(1)!.toString(), 'exp');
  assert.equal(infos.get(2)!.toString(), 'a test export');
  const bs = infos.get(3)!;
  assert.deepEqual([bs.readUInt32BE(0), bs.readUInt32BE(4), bs.readUInt32BE(8)], [512, 4096, 32 * MiB]);

  assert.equal((await c.option(OPT.INFO, infoData('other', [])))[0]!.type, ERR_UNKNOWN);
  assert.equal((await c.option(OPT.INFO, Buffer.from([0, 0, 0, 9, 1])))[0]!.type, ERR_INVALID);
  const go = await c.option(OPT.GO, infoData('', []));
  assert.equal(go[go.length - 1]!.type, ACK, 'GO after INFO enters transmission');
  c.request(3, 1n, 0, 0); // FLUSH
  assert.equal((await c.simpleReply()).error, 0);
});

test('unsupported options get ERR_UNSUP and ABORT is acknowledged then closed', async (t) => {
  const { c } = await client(t);
  await c.greeting();
  c.sendClientFlags(3);
  assert.equal((await c.option(99, Buffer.from('junk')))[0]!.type, ERR_UNSUP);
  assert.equal((await c.option(OPT.STARTTLS))[0]!.type, ERR_UNSUP);
  assert.equal((await c.option(11))[0]!.type, ERR_UNSUP, 'extended headers are not offered');
  const abort = await c.option(OPT.ABORT);
  assert.equal(abort[0]!.type, ACK);
  assert.equal(await c.closesWithin(2000), true);
});

test('structured replies and base:allocation meta contexts', async (t) => {
  const { c } = await client(t);
  await c.greeting();
  c.sendClientFlags(3);
  assert.equal((await c.option(OPT.LIST_META, metaData('exp', [])))[0]!.type, ERR_INVALID, 'meta context needs structured replies');
  assert.equal((await c.option(OPT.STRUCTURED))[0]!.type, ACK);
  assert.equal((await c.option(OPT.STRUCTURED))[0]!.type, ERR_INVALID, 'only once');

  const all = await c.option(OPT.LIST_META, metaData('exp', []));
  assert.deepEqual(all.map((r) => r.type), [META, ACK]);
  assert.equal(all[0]!.data.toString('utf8', 4), 'base:allocation');
  assert.deepEqual((await c.option(OPT.LIST_META, metaData('exp', ['base:']))).map((r) => r.type), [META, ACK]);
  assert.deepEqual((await c.option(OPT.LIST_META, metaData('exp', ['x-other:thing']))).map((r) => r.type), [ACK]);
  assert.equal((await c.option(OPT.LIST_META, metaData('nope', [])))[0]!.type, ERR_UNKNOWN);
  assert.equal((await c.option(OPT.SET_META, Buffer.from([0, 0, 0, 0, 0, 0, 0, 5])))[0]!.type, ERR_INVALID, 'truncated query list');

  const set = await c.option(OPT.SET_META, metaData('exp', ['base:allocation', 'x-unknown:y']));
  assert.deepEqual(set.map((r) => r.type), [META, ACK]);
  assert.notEqual(set[0]!.data.readUInt32BE(0), 0, 'a selected context has an id');

  const go = await c.option(OPT.GO, infoData('exp', [3]));
  const exp = go.find((r) => r.type === INFO && r.data.readUInt16BE(0) === 0)!;
  assert.equal(exp.data.readUInt16BE(10) & (1 << 7), 1 << 7, 'DF offered once structured replies are on');
});
