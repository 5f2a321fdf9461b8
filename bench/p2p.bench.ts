/**
 * P2P distribution.
 *
 * Simulation (src/p2p/simulate, the agents' tree code) in the default setting of
 * src/p2p/simulate/setting.ts: 1,000 hosts / 10,000 containers with binary, 3-ary and 4-ary
 * trees, and 5,000 hosts; the peer row is every host reading from the registry directly.
 *
 * Multi-host (test/p2p/netns-cluster.ts, needs root, ip, tc, docker-registry and the dist
 * build): 8 and 16 hosts in network namespaces behind 100 Mbit/s tbf links, the registry in its
 * own namespace behind `dadi p2p root`, every host reading the same trace (a 15.8 MB image read
 * whole) at once; time for all hosts to finish with dadi P2P vs every host reading from the
 * registry directly, and registry egress in copies of what one host alone fetches.
 * DADI_BENCH_P2P_HOSTS=8,16 picks the sizes; DADI_BENCH_NO_NETNS=1 skips the multi-host part.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { simulate, summary } from '../src/p2p/simulate/model.ts';
import { defaultSetting } from '../src/p2p/simulate/setting.ts';
import { repoRoot } from '../test/helpers/env.ts';
import { clusterImage, runCluster, type ClusterRun } from '../test/p2p/netns-cluster.ts';
import type { BenchRow } from './run.ts';

function simulationRows(): BenchRow[] {
  const rows: BenchRow[] = [];
  const base = defaultSetting();
  const direct = summary(simulate({ ...base, fanout: 0 }));
  for (const fanout of [2, 3, 4]) {
    const s = summary(simulate({ ...base, fanout }));
    rows.push({ name: `simulate 1000 hosts/10000 containers ${fanout}-ary: p99 start-up`, value: s.p99_s!, unit: 's', lowerIsBetter: true,
      peer: { name: 'registry only', value: direct.p99_s! }, note: `(paper: ~4 s; height ${s.tree_height}, host trace done by ${s.host_max_s} s)` });
    rows.push({ name: `simulate 1000 hosts ${fanout}-ary: registry egress`, value: s.registry_copies!, unit: 'copies', lowerIsBetter: true,
      peer: { name: 'registry only', value: direct.registry_copies! }, note: '(paper: ~1 copy)' });
  }
  for (const fanout of [2, 3]) {
    const s = summary(simulate({ ...base, hosts: 5000, containers: 50_000, fanout }));
    rows.push({ name: `simulate 5000 hosts/50000 containers ${fanout}-ary: p99 start-up`, value: s.p99_s!, unit: 's', lowerIsBetter: true });
  }
  return rows;
}

/** A stand-in for node:test's context: the cluster image helpers register cleanups with `after`. */
function benchContext(): { t: TestContext; cleanup: () => Promise<void> } {
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => { cleanups.push(fn); } } as unknown as TestContext;
  return { t, cleanup: async () => { for (const fn of cleanups.reverse()) await fn(); } };
}

function copies(run: ClusterRun, blobs: string[]): number {
  const sent = blobs.reduce((s, d) => s + (run.registryBytes.get(d) ?? 0), 0);
  const one = blobs.reduce((s, d) => s + (run.oneCopy.get(d) ?? 0), 0);
  return sent / one;
}

async function clusterRows(): Promise<BenchRow[]> {
  const can = process.getuid?.() === 0 && !process.env.DADI_BENCH_NO_NETNS && existsSync(join(repoRoot, 'dist/cli/main.js'))
    && ['ip', 'tc', 'curl', 'docker-registry'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
  if (!can) return [];
  const sizes = (process.env.DADI_BENCH_P2P_HOSTS ?? '8,16').split(',').map(Number);
  const { t, cleanup } = benchContext();
  const work = await mkdtemp(join(tmpdir(), 'dadi-p2p-bench-'));
  const rows: BenchRow[] = [];
  try {
    const { image } = await clusterImage(t, 48);
    for (const hosts of sizes) {
      const p2p = await runCluster({ hosts, mode: 'p2p', rate: '100mbit', fanout: 2, peerTimeoutMs: 20_000, image, workDir: join(work, `p2p-${hosts}`) });
      const direct = await runCluster({ hosts, mode: 'direct', rate: '100mbit', image, workDir: join(work, `direct-${hosts}`) });
      rows.push({ name: `netns ${hosts} hosts 100mbit: all hosts read the trace`, value: p2p.seconds, unit: 's', lowerIsBetter: true,
        peer: { name: 'every host from the registry', value: direct.seconds }, note: `(one host alone: ${p2p.aloneSeconds.toFixed(2)} s)` });
      rows.push({ name: `netns ${hosts} hosts 100mbit: registry egress`, value: copies(p2p, image.blobs), unit: 'copies', lowerIsBetter: true,
        peer: { name: 'every host from the registry', value: copies(direct, image.blobs) } });
    }
  } finally {
    await cleanup();
    await rm(work, { recursive: true, force: true });
  }
  return rows;
}

export async function run(): Promise<BenchRow[]> {
  return [...simulationRows(), ...await clusterRows()];
}
