import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadDeviceConfig, writeResultFile } from '../../src/image/device-config.ts';
import { tempDir } from '../helpers/env.ts';

async function setup(t: import('node:test').TestContext) {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'base.lsmt'), 'x');
  for (const [sub, files] of [['l1', ['overlaybd.commit', '.commit']], ['l2', ['.commit', 'overlaybd.sealed']], ['l3', ['overlaybd.sealed']], ['empty', []]] as const) {
    await mkdir(join(dir, sub));
    for (const f of files) await writeFile(join(dir, sub, f), 'x');
  }
  const write = async (cfg: unknown, name = 'config.v1.json') => {
    const p = join(dir, name);
    await writeFile(p, typeof cfg === 'string' ? cfg : JSON.stringify(cfg));
    return p;
  };
  return { dir, write };
}

test('lowers resolve bottom-first: file as given, dir to overlaybd.commit, .commit, overlaybd.sealed', async (t) => {
  const { dir, write } = await setup(t);
  const p = await write({
    repoBlobUrl: 'https://registry.example/v2/x/blobs',
    lowers: [{ file: 'base.lsmt' }, { dir: join(dir, 'l1'), digest: 'sha256:aa', size: 1 }, { dir: 'l2' }, { dir: 'l3' }],
    upper: { data: 'rw/writable_data', index: join(dir, 'rw/writable_index') },
    resultFile: 'result',
  });
  const cfg = await loadDeviceConfig(p);
  assert.deepEqual(cfg.lowers, [join(dir, 'base.lsmt'), join(dir, 'l1/overlaybd.commit'), join(dir, 'l2/.commit'), join(dir, 'l3/overlaybd.sealed')]);
  assert.deepEqual(cfg.upper, { data: join(dir, 'rw/writable_data'), index: join(dir, 'rw/writable_index') });
  assert.equal(cfg.resultFile, join(dir, 'result'));
});

test('an empty upper is a read-only device; accelerationLayer drops the trace layer', async (t) => {
  const { write } = await setup(t);
  const cfg = await loadDeviceConfig(await write({ lowers: [{ file: 'base.lsmt' }, { dir: 'l3' }], upper: {}, accelerationLayer: true }));
  assert.equal(cfg.upper, undefined);
  assert.equal(cfg.lowers.length, 1);
});

test('invalid configs are refused with the file and the problem named', async (t) => {
  const { write } = await setup(t);
  const cases: Array<[unknown, RegExp]> = [
    ['{not json', /not valid JSON/],
    [[1, 2], /must be a JSON object/],
    [{ lowers: {} }, /"lowers" must be an array/],
    [{ lowers: [42] }, /lowers\[0\] must be an object/],
    [{ lowers: [{}] }, /lowers\[0\] has neither "file" nor "dir"/],
    [{ lowers: [{ file: 'missing.lsmt' }] }, /lowers\[0\]\.file .*missing\.lsmt does not exist/],
    [{ lowers: [{ file: 'base.lsmt' }, { dir: 'empty', digest: 'sha256:bb' }] }, /lowers\[1\]\.dir .*empty holds none of overlaybd\.commit, \.commit, overlaybd\.sealed \(a remote layer not downloaded yet\)/],
    [{ lowers: [{ digest: 'sha256:cc', size: 3 }] }, /remote layer \(digest sha256:cc\)/],
    [{ lowers: [{ file: 'base.lsmt', targetDigest: 'sha256:dd' }] }, /turboOCI/],
    [{ lowers: [{ file: '' }] }, /lowers\[0\]\.file must be a non-empty string/],
    [{ lowers: [{ file: 'base.lsmt' }], upper: { data: 'd' } }, /"upper\.index" must be a non-empty string/],
    [{ lowers: [{ file: 'base.lsmt' }], upper: 'rw' }, /"upper" must be an object/],
    [{ lowers: [], upper: {} }, /no layers/],
    [{ lowers: [{ file: 'base.lsmt' }], resultFile: 7 }, /"resultFile" must be a non-empty string/],
  ];
  for (const [cfg, re] of cases) {
    const p = await write(cfg, 'bad.json');
    await assert.rejects(loadDeviceConfig(p), (err: Error) => {
      assert.match(err.message, re);
      assert.ok(err.message.startsWith(p), `names the file: ${err.message}`);
      return true;
    });
  }
  await assert.rejects(loadDeviceConfig('/nonexistent/config.v1.json'), /cannot read the device config/);
});

test('writeResultFile writes success or failed:<reason>', async (t) => {
  const { dir } = await setup(t);
  const p = join(dir, 'result');
  await writeResultFile(p);
  assert.equal(await readFile(p, 'utf8'), 'success');
  await writeResultFile(p, new Error('layer 2 is corrupt'));
  assert.equal(await readFile(p, 'utf8'), 'failed:layer 2 is corrupt');
});
