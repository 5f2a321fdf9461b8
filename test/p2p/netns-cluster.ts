/**
 * A data center on one machine for the multi-host test and bench/p2p.bench.ts: every node (the
 * registry, the P2P root, N hosts) in its own network namespace, each linked by a veth pair to a
 * bridge in a switch namespace, both ends of every link rate-limited with tbf (as
 * ../shared/bench/netem.sh does; this kernel has no netem, so no added RTT). The registry is a
 * real `docker-registry` whose access log counts the blob bytes it serves; the root is
 * `dadi p2p root` (dist build); each host is test/p2p/netns-host.ts. Everything is torn down
 * (processes killed, namespaces deleted) by the returned `close`, also after a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createHash } from 'node:crypto';
import type { TestContext } from 'node:test';
import { openLocalImage } from '../../src/image/local.ts';
import { BlobTree } from '../../src/p2p/topology.ts';
import { repoRoot, tempDir } from '../helpers/env.ts';
import { startDockerRegistry } from '../helpers/registry.ts';
import { buildObdImage, generateLayer, pushObdImage } from '../image/remote/fixture.ts';

export interface ClusterImage {
  /** docker-registry storage holding the pushed image (the `data` dir of a stopped registry). */
  storage: string;
  /** `repository:tag` within the registry. */
  repoTag: string;
  blobs: string[];
  /** The trace every host reads: disk [offset, length] pairs. */
  ranges: Array<[number, number]>;
}

export interface ClusterOptions {
  hosts: number;
  mode: 'p2p' | 'direct';
  /** tbf rate of every link, e.g. `100mbit`. */
  rate: string;
  fanout?: number;
  /** Kill the host at position 1 of the largest blob's tree this many ms after the reads start. */
  killMidTreeAfterMs?: number;
  image: ClusterImage;
  workDir: string;
  token?: string;
  /** Per-peer timeout of the agents (default 3000 ms). */
  peerTimeoutMs?: number;
  /** tbf queue limit as latency (default 20 ms, as netem.sh). */
  queueMs?: number;
}

export interface HostResult {
  host: string; sha256?: string; seconds?: number; served?: number;
  /** CPU seconds the host process used while reading the trace (and serving meanwhile). */
  cpuSeconds?: number; error?: string; killed?: boolean;
  /** Warnings the host logged (peers skipped, fallbacks), the first few of them. */
  warnings?: string[];
}

export interface ClusterRun {
  hosts: HostResult[];
  /** Time until the last host finished reading the trace. */
  seconds: number;
  /** Blob bytes the registry sent (its access log), by digest. */
  registryBytes: Map<string, number>;
  /** Blob bytes the registry sent to the one host that read the trace alone first, by digest. */
  oneCopy: Map<string, number>;
  killed: string | undefined;
  /** Seconds the one host alone took to read the trace from the registry (the link to itself). */
  aloneSeconds: number;
  /** HTTP status a request without the peer token got from a host (p2p mode). */
  unauthenticatedStatus: number | undefined;
}

const SUBNET = '10.233.0';
const PORT = 7070;

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

function tbfBurst(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)bit$/.exec(rate);
  if (!m) throw new Error(`rate ${rate}: expected e.g. 100mbit`);
  const bps = Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6, g: 1e9 } as Record<string, number>)[m[2]!]!;
  return Math.max(Math.floor(bps / 8 / 500), 65536);
}

/** Namespaces and links; `close` deletes them all. */
class Network {
  readonly tag = String(process.pid % 10000);
  readonly namespaces: string[] = [];
  private readonly sw: string;
  /** Whether /run/netns was a mount point before: the first `ip netns add` mounts it, close() undoes that. */
  private netnsDirMounted = false;

  constructor(private readonly rate: string, private readonly queueMs = 20) {
    this.sw = `dp2p${this.tag}sw`;
  }

  up(): void {
    this.netnsDirMounted = isMountPoint('/run/netns');
    ip(['netns', 'add', this.sw]);
    this.namespaces.push(this.sw);
    ip(['-n', this.sw, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', this.sw, 'link', 'set', 'br0', 'up']);
  }

  /** A node with address SUBNET.(index+2) on the bridge; returns its namespace. */
  node(name: string, index: number): { ns: string; addr: string } {
    const ns = `dp2p${this.tag}${name}`;
    ip(['netns', 'add', ns]);
    this.namespaces.push(ns);
    const a = `v${this.tag}n${index}a`;
    const b = `v${this.tag}n${index}b`;
    ip(['-n', ns, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', this.sw]);
    const addr = `${SUBNET}.${index + 2}`;
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', a]);
    ip(['-n', ns, 'link', 'set', a, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', this.sw, 'link', 'set', b, 'master', 'br0']);
    ip(['-n', this.sw, 'link', 'set', b, 'up']);
    const burst = String(tbfBurst(this.rate));
    for (const [n, dev] of [[ns, a], [this.sw, b]] as const) {
      const r = spawnSync('ip', ['netns', 'exec', n, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', this.rate, 'burst', burst, 'latency', `${this.queueMs}ms`], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tc on ${dev}: ${r.stderr.trim()}`);
    }
    return { ns, addr };
  }

  close(): void {
    for (const ns of this.namespaces.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    this.namespaces.length = 0;
    // iproute2 bind-mounts /run/netns onto itself for the first namespace and leaves it there;
    // undo it when this test made it and no other namespace is left in it.
    if (!this.netnsDirMounted && isMountPoint('/run/netns') && readdirSync('/run/netns').length === 0) {
      for (let i = 0; i < 3 && isMountPoint('/run/netns'); i++) spawnSync('umount', ['/run/netns']);
    }
  }
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
}

/** A process in a namespace with its stdout as lines. */
class Proc {
  readonly child: ChildProcess;
  private readonly queue: string[] = [];
  private waiters: Array<(line: string | undefined) => void> = [];
  stderr = '';

  constructor(ns: string, argv: string[], onLine?: (line: string) => void) {
    this.child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], cwd: repoRoot });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-20000); });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      onLine?.(line);
      const w = this.waiters.shift();
      if (w) w(line); else this.queue.push(line);
    }).on('close', () => { for (const w of this.waiters.splice(0)) w(undefined); });
  }

  /** The next stdout line (undefined when stdout closed), within `ms`. */
  line(ms = 60_000): Promise<string | undefined> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output within ${ms} ms; stderr: ${this.stderr.slice(-2000)}`)), ms);
      this.waiters.push((l) => { clearTimeout(timer); resolve(l); });
    });
  }

  send(line: string): void {
    if (this.child.stdin!.writable) this.child.stdin!.write(`${line}\n`);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

async function waitHttp(ns: string, url: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (spawnSync('ip', ['netns', 'exec', ns, 'curl', '-fsS', '-o', '/dev/null', url]).status === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer from ${ns}`);
}

/** Runs the cluster once and tears it down. */
export async function runCluster(o: ClusterOptions): Promise<ClusterRun> {
  const net = new Network(o.rate, o.queueMs);
  const procs: Proc[] = [];
  try {
    net.up();
    const reg = net.node('reg', 0);
    const root = net.node('root', 1);
    const hosts = Array.from({ length: o.hosts }, (_, i) => ({ name: `h${i}`, ...net.node(`h${i}`, i + 2) }));
    const baseline = net.node('base', o.hosts + 2);
    await mkdir(o.workDir, { recursive: true });

    // The registry, its access log counting blob bytes.
    const registryBytes = new Map<string, number>();
    const config = join(o.workDir, 'registry.yml');
    await writeFile(config, ['version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${o.image.storage}`,
      '  maintenance:', '    uploadpurging:', '      enabled: false', 'http:', `  addr: ${reg.addr}:5000`, ''].join('\n'));
    const countLine = (line: string): void => {
      const m = /"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" 20[06] (\d+)/.exec(line);
      if (m) registryBytes.set(m[1]!, (registryBytes.get(m[1]!) ?? 0) + Number(m[2]));
    };
    const registry = new Proc(reg.ns, ['docker-registry', 'serve', config], countLine);
    registry.child.stderr!.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) countLine(l); });
    procs.push(registry);
    await waitHttp(reg.ns, `http://${reg.addr}:5000/v2/`);
    const ref = `${reg.addr}:5000/${o.image.repoTag}`;

    const hostArgs = (name: string, p2pConfig?: string): string[] => ['node', '--import', 'tsx', join(repoRoot, 'test/p2p/netns-host.ts'),
      JSON.stringify({ ref, cacheDir: join(o.workDir, name, 'cache'), ranges: o.image.ranges, ...(p2pConfig ? { p2pConfig } : {}) })];
    const result = async (p: Proc): Promise<HostResult & { attached?: boolean }> => {
      const line = await p.line(180_000);
      if (line === undefined) return { host: '', error: `exited: ${p.stderr.slice(-2000)}` };
      return JSON.parse(line) as HostResult;
    };

    // One host alone, straight from the registry: what one copy of the trace costs.
    const base = new Proc(baseline.ns, hostArgs('base'));
    procs.push(base);
    for (let step = 0; step < 2; step++) {
      const b0 = await result(base);
      if (b0.error) throw new Error(`baseline host: ${b0.error}`);
      if (step === 0) base.send('attach');
    }
    base.send('go');
    const b1 = await result(base);
    if (b1.error) throw new Error(`baseline host: ${b1.error}`);
    const aloneSeconds = b1.seconds!;
    base.send('stop');
    const oneCopy = new Map(registryBytes);
    registryBytes.clear();

    const token = o.token ?? 'cluster-token';
    const members = hosts.map((h) => `${h.addr}:${PORT}`);
    if (o.mode === 'p2p') {
      await writeFile(join(o.workDir, 'token'), `${token}\n`);
      const rootProc = new Proc(root.ns, ['node', join(repoRoot, 'dist/cli/main.js'), 'p2p', 'root', '--listen', `${root.addr}:${PORT}`,
        '--token-file', join(o.workDir, 'token'), '--insecure', '--cache-dir', join(o.workDir, 'root-cache'), '--json']);
      procs.push(rootProc);
      const first = await rootProc.line(30_000);
      if (!first?.includes('"listen"')) throw new Error(`p2p root did not start: ${rootProc.stderr}`);
    }
    const hostProcs = await Promise.all(hosts.map(async (h) => {
      let cfg: string | undefined;
      if (o.mode === 'p2p') {
        cfg = join(o.workDir, `${h.name}.toml`);
        await writeFile(cfg, ['[p2p]', `self = "${h.addr}:${PORT}"`, `root = "${root.addr}:${PORT}"`, `peers = [${members.map((m) => `"${m}"`).join(', ')}]`,
          `fanout = ${o.fanout ?? 2}`, `tokenFile = "${join(o.workDir, 'token')}"`, `timeoutMs = ${o.peerTimeoutMs ?? 3000}`, ''].join('\n'));
      }
      const p = new Proc(h.ns, hostArgs(h.name, cfg));
      procs.push(p);
      return p;
    }));
    for (const step of ['start its agent', 'attach']) {
      for (const [i, p] of hostProcs.entries()) {
        const a = await result(p);
        if (a.error) throw new Error(`host h${i} did not ${step}: ${a.error}`);
      }
      if (step !== 'attach') for (const p of hostProcs) p.send('attach');
    }

    let killed: string | undefined;
    let victim: Proc | undefined;
    if (o.killMidTreeAfterMs !== undefined) {
      const largest = o.image.blobs[0]!;
      const tree = new BlobTree(largest, members, o.fanout ?? 2);
      killed = tree.order[1]!;
      victim = hostProcs[members.indexOf(killed)]!;
    }
    const t0 = performance.now();
    for (const p of hostProcs) p.send('go');
    if (victim) setTimeout(() => victim.kill(), o.killMidTreeAfterMs);
    const results: HostResult[] = await Promise.all(hostProcs.map(async (p, i) => {
      const r = await result(p);
      const warnings = p.stderr.split('\n').filter((l) => l.includes('"level":40')).slice(0, 5).map((l) => l.slice(0, 400));
      return { ...r, host: hosts[i]!.name, warnings, ...(p === victim ? { killed: true } : {}) };
    }));
    const seconds = (performance.now() - t0) / 1000;
    let unauthenticatedStatus: number | undefined;
    if (o.mode === 'p2p') {
      const live = members.find((m) => m !== killed)!;
      const r = spawnSync('ip', ['netns', 'exec', baseline.ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-r', '0-1023',
        '-H', `X-Dadi-Repository: ${reg.addr}:5000/${o.image.repoTag.split(':')[0]}`, '-H', 'X-Dadi-Blob-Size: 1048576',
        `http://${live}/blobs/${o.image.blobs[0]}`], { encoding: 'utf8' });
      unauthenticatedStatus = Number(r.stdout);
    }
    for (const p of hostProcs) p.send('stop');
    return { hosts: results, seconds, registryBytes, oneCopy, killed, unauthenticatedStatus, aloneSeconds };
  } finally {
    for (const p of procs) p.kill();
    await new Promise((r) => setTimeout(r, 200));
    net.close();
  }
}

const CHUNK = 256 << 10;

/**
 * The image every host reads: a layer of `chunks` incompressible 256 KiB chunks scattered over a
 * 1 GiB disk under a layer of a quarter as many, pushed to a docker-registry whose storage the
 * cluster's registry then serves; the trace is every chunk; `expected` is the sha256 of the
 * trace read from the local layer files.
 */
export async function clusterImage(t: TestContext, chunks: number): Promise<{ image: ClusterImage; expected: string }> {
  const dir = await tempDir(t);
  const l1 = await generateLayer(dir, { chunks, chunkSize: CHUNK, virtualSize: 1 << 30, seed: 1, incompressible: true });
  const l2 = await generateLayer(dir, { chunks: Math.ceil(chunks / 4), chunkSize: CHUNK, virtualSize: 1 << 30, seed: 7, incompressible: true });
  const img = await buildObdImage([l1.path, l2.path]);
  const reg = await startDockerRegistry(t);
  await pushObdImage(reg.hostPort, 'p2p/app', 'v1', img);
  await reg.stop();
  const ranges: Array<[number, number]> = [...l1.offsets, ...l2.offsets].map((o) => [o, CHUNK]);
  const disk = await openLocalImage([l1.path, l2.path]);
  const hash = createHash('sha256');
  for (const [o, n] of ranges) {
    const b = Buffer.alloc(n);
    await disk.read(b, o);
    hash.update(b);
  }
  await disk.close();
  const blobs = [...img.layers].sort((a, b) => b.size - a.size).map((l) => l.digest);
  return { image: { storage: join(reg.root, 'data'), repoTag: 'p2p/app:v1', blobs, ranges }, expected: hash.digest('hex') };
}
