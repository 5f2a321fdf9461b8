/**
 * The P2P distribution as a discrete-event model, driven by the same tree code the agents use
 * (topology.ts: BlobTree.parentOf, with down members skipped) and the same fetch rules the
 * block cache and the agents follow: a host reads its start-up trace unit by unit (refill units)
 * with a window of reads in flight; a unit a node has is answered at once, a unit a node is
 * already fetching is waited for (in-flight coalescing), any other unit is fetched from the
 * node's parent in that blob's tree, the top of the tree from the root and the root from the
 * registry, each once.
 *
 * Links: every node's upload is a FIFO server (host NIC, root NIC, registry egress) over which
 * a unit takes size/bandwidth, plus half the RTT each way for the request and the answer;
 * store-and-forward per unit (a node serves a unit once it has it all, as the agents do).
 * Downloads are not a bottleneck in a tree (each host downloads one copy), so they are not
 * queued. Containers on a host share its cache: each finishes its start-up at the host's trace
 * completion plus a per-container start cost.
 */
import { BlobTree, ROOT } from '../topology.ts';
import { EventQueue } from './events.ts';

export interface SimBlob { digest: string; size: number }

export interface SimTrace {
  blobs: SimBlob[];
  /** The units read at start-up, in order: [blob index, unit index]. */
  units: Array<[number, number]>;
}

export interface SimOptions {
  hosts: number;
  containers: number;
  /** k of the tree; 0: no P2P, every host reads from the registry. */
  fanout: number;
  hostBitsPerSec: number;
  rootBitsPerSec: number;
  registryBitsPerSec: number;
  rttSec: number;
  unitBytes: number;
  /** Reads in flight per host (parallel reads and read-ahead). */
  window: number;
  /** Per container, after its trace is local (runtime, process start). */
  containerStartSec: number;
  /** A node's own work per unit it forwards (cache write and read back, HTTP), before sending. */
  hopSec: number;
  trace: SimTrace;
  /** Hosts (by index) that are down from the start: skipped in every tree. */
  down?: ReadonlySet<number>;
}

export interface SimResult {
  hosts: number;
  containers: number;
  fanout: number;
  /** Per live host: seconds until its trace was local. */
  hostSeconds: number[];
  /** Per container: seconds until its start-up reads were done. */
  containerSeconds: number[];
  registryBytes: number;
  /** Bytes of the image the trace reads (distinct units). */
  traceBytes: number;
  treeHeight: number;
}

type NodeId = number; // 0..hosts-1 hosts, -1 root, -2 registry
const ROOT_ID = -1;
const REGISTRY_ID = -2;


export function hostName(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7070`;
}

export function simulate(o: SimOptions): SimResult {
  const q = new EventQueue();
  const names = Array.from({ length: o.hosts }, (_, i) => hostName(i));
  const index = new Map(names.map((n, i) => [n, i]));
  const down = o.down ?? new Set<number>();
  const trees = o.fanout > 0 ? o.trace.blobs.map((b) => new BlobTree(b.digest, names, o.fanout)) : [];
  const unitSize = (b: number, u: number): number => Math.min(o.unitBytes, o.trace.blobs[b]!.size - u * o.unitBytes);
  const upFree = new Map<NodeId, number>();
  const bps = (n: NodeId): number => (n === REGISTRY_ID ? o.registryBitsPerSec : n === ROOT_ID ? o.rootBitsPerSec : o.hostBitsPerSec);
  // Unit state per (node, unit): flat arrays, since 20,000 hosts x 1,000 units is common.
  const firstUnit: number[] = [];
  let totalUnits = 0;
  for (const blob of o.trace.blobs) {
    firstUnit.push(totalUnits);
    totalUnits += Math.ceil(blob.size / o.unitBytes);
  }
  const slot = (node: NodeId, b: number, u: number): number => (node + 2) * totalUnits + firstUnit[b]! + u;
  const present = new Uint8Array((o.hosts + 2) * totalUnits);
  present.fill(1, 0, totalUnits); // the registry has everything
  const waiting = new Map<number, Array<() => void>>();
  let registryBytes = 0;

  // Parents are fixed for a run (down hosts are down from the start): asked once per host and blob.
  const parents = new Int32Array(o.hosts * o.trace.blobs.length).fill(-3);
  const parentOf = (node: NodeId, b: number): NodeId => {
    if (node === ROOT_ID || o.fanout === 0) return REGISTRY_ID;
    const k = node * o.trace.blobs.length + b;
    if (parents[k] === -3) {
      const p = trees[b]!.parentOf(names[node]!, (m) => down.has(index.get(m)!));
      parents[k] = p === ROOT ? ROOT_ID : index.get(p)!;
    }
    return parents[k]!;
  };

  /** Sends unit (b,u) from `from` to a requester: queued on `from`'s upload, then half an RTT. */
  const send = (from: NodeId, b: number, u: number, deliver: () => void): void => {
    const size = unitSize(b, u);
    const start = Math.max(q.now + (from === REGISTRY_ID ? 0 : o.hopSec), upFree.get(from) ?? 0);
    const end = start + (size * 8) / bps(from);
    upFree.set(from, end);
    if (from === REGISTRY_ID) registryBytes += size;
    q.at(end + o.rttSec / 2, deliver);
  };

  /** `node` wants unit (b,u); `done` runs when the node has it. */
  const obtain = (node: NodeId, b: number, u: number, done: () => void): void => {
    const k = slot(node, b, u);
    if (present[k]) return done();
    const waiters = waiting.get(k);
    if (waiters) return void waiters.push(done); // being fetched: wait for that fetch
    waiting.set(k, [done]);
    const parent = parentOf(node, b);
    q.at(q.now + o.rttSec / 2, () => { // the request travels to the parent
      obtain(parent, b, u, () => send(parent, b, u, () => {
        present[k] = 1;
        const ws = waiting.get(k)!;
        waiting.delete(k);
        for (const w of ws) w();
      }));
    });
  };

  const live = names.map((_, i) => i).filter((i) => !down.has(i));
  const hostSeconds: number[] = [];
  for (const h of live) {
    let next = 0;
    let finished = 0;
    const issue = (): void => {
      if (next >= o.trace.units.length) return;
      const [b, u] = o.trace.units[next++]!;
      obtain(h, b, u, () => {
        finished++;
        if (finished === o.trace.units.length) hostSeconds.push(q.now);
        else issue();
      });
    };
    q.at(0, () => { for (let i = 0; i < o.window; i++) issue(); });
  }
  q.run();

  const containerSeconds: number[] = [];
  const perHost = o.containers / live.length;
  hostSeconds.forEach((t, i) => {
    const n = Math.floor(perHost * (i + 1)) - Math.floor(perHost * i);
    for (let c = 0; c < n; c++) containerSeconds.push(t + o.containerStartSec);
  });
  const traceBytes = o.trace.units.reduce((s, [b, u]) => s + unitSize(b, u), 0);
  return {
    hosts: o.hosts, containers: containerSeconds.length, fanout: o.fanout, hostSeconds, containerSeconds, registryBytes, traceBytes,
    treeHeight: trees.length > 0 ? max(trees.map((t) => t.height)) : 0,
  };
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** The figures `dadi p2p simulate --json` prints. */
export function summary(r: SimResult): Record<string, number> {
  return {
    hosts: r.hosts, containers: r.containers, fanout: r.fanout, tree_height: r.treeHeight,
    p50_s: round(quantile(r.containerSeconds, 0.5)), p99_s: round(quantile(r.containerSeconds, 0.99)),
    max_s: round(max(r.containerSeconds)), host_max_s: round(max(r.hostSeconds)),
    registry_bytes: r.registryBytes, trace_bytes: r.traceBytes, registry_copies: round(r.registryBytes / r.traceBytes),
  };
}

function max(values: readonly number[]): number {
  let m = -Infinity;
  for (const v of values) if (v > m) m = v;
  return m;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
