/**
 * The snapshotter config: `dadi snapshotter --print-config` prints a complete TOML config that
 * reads back as the same config; the shipped deploy files agree with the defaults; a file
 * overrides defaults key by key and flags override the file; mistakes are named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { applyToml, defaultConfig, loadConfig } from '../../src/daemon/config.ts';
import { parseHttpAddress } from '../../src/daemon/http-address.ts';
import { repoRoot, runDadi, tempDir } from '../helpers/env.ts';

/** The error a config document is refused with, or 'accepted'. */
function refusal(doc: Record<string, unknown>): string {
  try {
    applyToml(defaultConfig(), doc, 'x.toml');
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

test('--print-config prints the defaults as TOML that loads back to the same config', async (t) => {
  const dir = await tempDir(t);
  const r = await runDadi(['snapshotter', '--print-config'], { env: { DADI_CACHE_DIR: '/var/cache/dadi-test' } });
  assert.equal(r.code, 0, r.stderr);
  const file = join(dir, 'printed.toml');
  await writeFile(file, r.stdout);
  const env = { DADI_CACHE_DIR: '/var/cache/dadi-test' };
  assert.deepEqual(await loadConfig(file, env), defaultConfig(env));
  assert.match(r.stdout.toString(), /rwMode = "overlayfs"/);
});

test('flags override the config file, which overrides the defaults', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'c.toml');
  await writeFile(file, 'rwMode = "dir"\nroot = "/from/file"\n[cache]\nsize = "1G"\nrefillUnit = "64K"\n[registry]\nplainHttp = ["reg.local:5000"]\n' +
    '[[registry.mirrors]]\nhost = "docker.io"\nendpoint = "https://mirror.example.com/"\n');
  const cfg = await loadConfig(file);
  assert.equal(cfg.rwMode, 'dir');
  assert.equal(cfg.cache.size, 2 ** 30);
  assert.equal(cfg.cache.refillUnit, 64 << 10);
  assert.deepEqual(cfg.registry, { plainHttp: ['reg.local:5000'], mirrors: [{ host: 'docker.io', endpoint: 'https://mirror.example.com' }], upstreamTimeoutMs: 5000 });
  const r = await runDadi(['snapshotter', '--config', file, '--root', '/from/flag', '--rw-mode', 'dev', '--print-config']);
  assert.equal(r.code, 0, r.stderr);
  const printed = parse(r.stdout.toString()) as Record<string, unknown>;
  assert.equal(printed.root, '/from/flag');
  assert.equal(printed.rwMode, 'dev');
  assert.equal((printed.cache as Record<string, unknown>).size, 2 ** 30, 'the file still counts where no flag is given');
});

test('config mistakes are refused with the key named', async (t) => {
  assert.match(refusal({ rwMode: 'tmpfs' }), /x\.toml: rwMode is "tmpfs"; expected one of overlayfs, dir, dev/);
  assert.match(refusal({ cache: { sizee: 1 } }), /cache\.sizee is not a known key/);
  assert.match(refusal({ cache: { refillUnit: 1000 } }), /refillUnit must be a multiple of 512/);
  assert.match(refusal({ registry: { mirrors: [{ host: 'docker.io' }] } }), /mirrors\[0\] needs both host and endpoint/);
  assert.match(refusal({ logLevel: 'loud' }), /logLevel "loud" is not a level/);
  const dir = await tempDir(t);
  await writeFile(join(dir, 'broken.toml'), 'root = \n');
  await assert.rejects(loadConfig(join(dir, 'broken.toml')), /broken\.toml: not valid TOML/);
  await assert.rejects(loadConfig(join(dir, 'missing.toml')), /missing\.toml: cannot read the config/);
});

test('the shipped deploy files agree with the defaults', async () => {
  const shipped = parse(await readFile(join(repoRoot, 'deploy', 'snapshotter.toml'), 'utf8')) as Record<string, unknown>;
  const cfg = applyToml(defaultConfig(), shipped, 'deploy/snapshotter.toml');
  const d = defaultConfig();
  assert.equal(cfg.root, d.root);
  assert.equal(cfg.address, d.address);
  const ctd = parse(await readFile(join(repoRoot, 'deploy', 'containerd-config.toml'), 'utf8')) as { proxy_plugins: { dadi: { type: string; address: string } } };
  assert.deepEqual({ ...ctd.proxy_plugins.dadi }, { type: 'snapshot', address: d.address });
  const unit = await readFile(join(repoRoot, 'deploy', 'dadi-snapshotter.service'), 'utf8');
  assert.match(unit, /ExecStart=\S*dadi snapshotter --config \/etc\/dadi\/snapshotter\.toml/);
});

test('metricsAddress and prefetch.layers: off by default, set by file or flag, printed, and checked', async (t) => {
  const d = defaultConfig();
  assert.equal(d.metricsAddress, '');
  assert.deepEqual(d.prefetch, { layers: '' });
  const dir = await tempDir(t);
  const file = join(dir, 'm.toml');
  await writeFile(file, 'metricsAddress = "/run/dadi-snapshotter/metrics.sock"\n[prefetch]\nlayers = "top,-2"\n');
  const cfg = await loadConfig(file);
  assert.equal(cfg.metricsAddress, '/run/dadi-snapshotter/metrics.sock');
  assert.equal(cfg.prefetch.layers, 'top,-2');
  const r = await runDadi(['snapshotter', '--config', file, '--metrics-address', '127.0.0.1:9863', '--prefetch-layers', 'bottom-first', '--print-config']);
  assert.equal(r.code, 0, r.stderr);
  const printed = parse(r.stdout.toString()) as { metricsAddress: string; prefetch: { layers: string } };
  assert.equal(printed.metricsAddress, '127.0.0.1:9863');
  assert.equal(printed.prefetch.layers, 'bottom-first');
  const off = await runDadi(['snapshotter', '--config', file, '--metrics-address', '', '--prefetch-layers', 'none', '--print-config']);
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stdout.toString(), /^metricsAddress = ""$/m, 'an empty flag turns the endpoint off');
  assert.match(off.stdout.toString(), /^layers = ""$/m);
  assert.match(refusal({ metricsAddress: 'localhost' }), /x\.toml: metricsAddress: not an HTTP listen address: "localhost"/);
  assert.match(refusal({ metricsAddress: 9863 }), /metricsAddress must be a string/);
  assert.match(refusal({ prefetch: { layers: 'middle' } }), /x\.toml: prefetch layers: "middle" is not top, bottom/);
  assert.match(refusal({ prefetch: { order: 'top' } }), /prefetch\.order is not a known key/);
  const flag = await runDadi(['snapshotter', '--metrics-address', 'nowhere', '--print-config']);
  assert.notEqual(flag.code, 0);
  assert.match(flag.stderr, /--metrics-address: metricsAddress: not an HTTP listen address/);
});

test('metrics addresses: HOST:PORT, tcp:, [v6]:PORT, unix: and socket paths', () => {
  assert.deepEqual(parseHttpAddress('127.0.0.1:9863'), { host: '127.0.0.1', port: 9863 });
  assert.deepEqual(parseHttpAddress('tcp:localhost:1'), { host: 'localhost', port: 1 });
  assert.deepEqual(parseHttpAddress('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(parseHttpAddress('unix:/run/x.sock'), { unix: '/run/x.sock' });
  assert.deepEqual(parseHttpAddress('/run/x.sock'), { unix: '/run/x.sock' });
  for (const bad of ['localhost', ':80', 'host:99999', 'unix:', 'http://h:1']) assert.throws(() => parseHttpAddress(bad), /not an HTTP listen address/, bad);
});
