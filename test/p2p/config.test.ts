/** The `[p2p]` table: the snapshotter config and `--p2p-config` read it the same way; bad values are named. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../src/daemon/config.ts';
import { loadP2PConfig } from '../../src/p2p/config.ts';
import { tempDir } from '../helpers/env.ts';

test('[p2p] with a peers file and a token file, in the snapshotter config and in --p2p-config', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'peers'), '10.0.0.1:7070\n10.0.0.2:7070 # me\n10.0.0.3:7070\n');
  await writeFile(join(dir, 'token'), 's3cret\n');
  const table = `[p2p]\nself = "10.0.0.2:7070"\nroot = "10.0.0.9:7070"\npeersFile = "${join(dir, 'peers')}"\ntokenFile = "${join(dir, 'token')}"\nfanout = 3\n`;
  await writeFile(join(dir, 'snapshotter.toml'), `root = "${dir}/root"\n${table}`);
  await writeFile(join(dir, 'p2p.toml'), table);
  const expected = { self: '10.0.0.2:7070', listen: '10.0.0.2:7070', root: '10.0.0.9:7070', members: ['10.0.0.1:7070', '10.0.0.2:7070', '10.0.0.3:7070'],
    fanout: 3, token: 's3cret', timeoutMs: 5000 };
  assert.deepEqual((await loadConfig(join(dir, 'snapshotter.toml'), {})).p2p, expected);
  assert.deepEqual(await loadP2PConfig(join(dir, 'p2p.toml')), expected);
  assert.equal((await loadConfig(undefined, { DADI_CACHE_DIR: dir })).p2p, undefined, 'no [p2p]: no agent');
});

test('bad [p2p] tables are refused with the key named', async (t) => {
  const dir = await tempDir(t);
  const bad = async (body: string): Promise<string> => {
    const f = join(dir, 'p.toml');
    await writeFile(f, `[p2p]\n${body}\n`);
    return loadP2PConfig(f).then(() => 'accepted', (e: Error) => e.message);
  };
  assert.match(await bad('root = "r:1"\npeers = ["a:1"]'), /p2p.self is required/);
  assert.match(await bad('self = "a:1"\npeers = ["a:1"]'), /p2p.root is required/);
  assert.match(await bad('self = "a:1"\nroot = "r:1"'), /p2p.peers or p2p.peersFile is required/);
  assert.match(await bad('self = "a:1"\nroot = "r:1"\npeers = ["b:1"]'), /p2p.self a:1 is not in the peer list/);
  assert.match(await bad('self = "a:1"\nroot = "r:1"\npeers = ["a:1"]\nfanout = 0'), /p2p.fanout .*fanout 0/);
  assert.match(await bad('self = "a:1"\nroot = "r:1"\npeers = ["a:1"]\nfanuot = 2'), /p2p.fanuot is not a known key/);
  assert.match(await bad('self = "a"\nroot = "r:1"\npeers = ["a:1"]'), /p2p.self "a" must be host:port/);
  assert.match(await bad(`self = "a:1"\nroot = "r:1"\npeersFile = "${dir}/none"`), /cannot read .*none/);
});
