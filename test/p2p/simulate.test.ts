/**
 * The simulation's shape, on the agents' topology code: the registry serves one copy with any
 * tree (and one per host without), start-up time grows with log(hosts), a binary tree beats
 * 3- and 4-ary ones at 1,000 hosts, and hosts that are down are routed around. Plus the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { simulate, summary, type SimOptions } from '../../src/p2p/simulate/model.ts';
import { defaultSetting, MB, spreadTrace } from '../../src/p2p/simulate/setting.ts';
import { runDadi, tempDir } from '../helpers/env.ts';

function small(hosts: number, fanout: number, extra: Partial<SimOptions> = {}): ReturnType<typeof summary> {
  const base = defaultSetting();
  return summary(simulate({ ...base, hosts, containers: hosts * 10, fanout, trace: spreadTrace([30 * MB, 10 * MB], 8 * MB, base.unitBytes), ...extra }));
}

test('the registry serves one copy through any tree, one per host without P2P', () => {
  for (const k of [2, 3, 4]) assert.equal(small(300, k).registry_copies, 1);
  assert.equal(small(50, 0).registry_copies, 50);
  assert.ok(small(50, 0).host_max_s! > 5 * small(50, 2).host_max_s!, 'P2P is much faster than every host reading from the registry');
});

test('start-up time grows with log(hosts), not with hosts', () => {
  const t = [64, 512, 4096].map((n) => small(n, 2).host_max_s!);
  assert.ok(t[0]! < t[1]! && t[1]! < t[2]!, `times ${t.join(', ')}`);
  // Each 8x more hosts adds about the same (three more levels), far from 8x the time.
  assert.ok(t[2]! - t[1]! < 2 * (t[1]! - t[0]!) + 0.005, `times ${t.join(', ')}`);
  assert.ok(t[2]! < 2 * t[0]!, `times ${t.join(', ')}`);
});

test('at 1,000 hosts a binary tree is best, then 3-ary, then 4-ary', () => {
  const [b, t3, t4] = [2, 3, 4].map((k) => small(1000, k).host_max_s!);
  assert.ok(b! < t3! && t3! < t4!, `2-ary ${b}, 3-ary ${t3}, 4-ary ${t4}`);
});

test('hosts down from the start are skipped; every other host finishes and the registry still serves one copy', () => {
  const down = new Set(Array.from({ length: 100 }, (_, i) => i * 5));
  const r = simulate({ ...defaultSetting(), hosts: 500, containers: 4000, fanout: 2, down, trace: spreadTrace([30 * MB], 4 * MB, 256 * 1024) });
  assert.equal(r.hostSeconds.length, 400);
  assert.equal(r.containerSeconds.length, 4000);
  assert.equal(summary(r).registry_copies, 1);
});

test('dadi p2p simulate: the default setting at 1,000 hosts meets the paper\'s goal; --json, --csv, bad flags', async (t) => {
  const dir = await tempDir(t);
  const csv = join(dir, 'sim.csv');
  const r = await runDadi(['p2p', 'simulate', '--hosts', '1000', '--containers', '10000', '--fanout', '2,3', '--json', '--csv', csv]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.toString()) as Record<string, number> & { fanouts: Array<Record<string, number>> };
  assert.equal(j.hosts, 1000);
  assert.equal(j.containers, 10000);
  assert.ok(j.p50_s! <= j.p99_s! && j.p99_s! <= j.max_s!);
  assert.ok(j.max_s! <= 4, `all containers started within ${j.max_s} s`);
  assert.equal(j.registry_copies, 1);
  assert.deepEqual(j.fanouts.map((f) => f.fanout), [2, 3]);
  const rows = (await readFile(csv, 'utf8')).trim().split('\n');
  assert.equal(rows[0], 'fanout,hosts,containers,container,seconds');
  assert.equal(rows.length, 1 + 2 * 10000);
  const table = await runDadi(['p2p', 'simulate', '--hosts', '200', '--containers', '400']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.toString(), /2-ary +200 +400/);
  assert.match(table.stdout.toString(), /DADI paper/);
  const bad = await runDadi(['p2p', 'simulate', '--host-bandwidth', 'fast']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--host-bandwidth fast: expected a rate/);
});
