/**
 * `dadi p2p root`: the caching server in front of the registry that P2P trees fetch from.
 * `dadi p2p simulate`: the discrete-event model of many hosts on the same topology code.
 */
import type { Command } from 'commander';

interface SimulateFlags {
  hosts: string; containers: string; fanout: string; hostBandwidth: string; rootBandwidth: string; registryBandwidth: string;
  rttMs: string; unit: string; window: string; containerStart: string; hopMs: string; traceBytes?: string; blobs?: string;
  down: string; csv?: string; json?: boolean;
}

interface RootFlags { listen: string; cacheDir?: string; cacheSize: string; tokenFile?: string; insecure?: boolean; json?: boolean }

export function register(program: Command): void {
  const p2p = program.command('p2p').description('P2P distribution of image blobs among hosts');
  p2p
    .command('root')
    .description('serve registry blobs to P2P agents, fetching each range once with this node\'s registry credentials and caching it')
    .option('--listen <host:port>', 'where agents reach the root', '0.0.0.0:7070')
    .option('--cache-dir <dir>', 'block cache (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--cache-size <size>', 'cap on the cache\'s disk use', '16G')
    .option('--token-file <file>', 'shared peer token (agents send it as a Bearer token); without it anyone can read through the root')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--json', 'print the listening line as JSON')
    .addHelpText('after', [
      '',
      'Example:',
      '  dadi p2p root --listen 10.0.0.2:7070 --token-file /etc/dadi/p2p.token --cache-dir /var/cache/dadi-root',
      '  curl -H "Authorization: Bearer $(cat /etc/dadi/p2p.token)" -H "X-Dadi-Repository: reg:5000/app" \\',
      '       -H "X-Dadi-Blob-Size: 1234567" -r 0-1023 http://10.0.0.2:7070/blobs/sha256:…',
    ].join('\n'))
    .action(async (opts: RootFlags) => {
      await runRoot(opts);
    });
  p2p
    .command('simulate')
    .description('model N hosts starting containers of one image through the P2P trees (the agents\' topology code) and print start-up times and registry egress')
    .option('--hosts <n>', 'hosts', '1000')
    .option('--containers <n>', 'containers, spread evenly over the hosts', '10000')
    .option('--fanout <list>', 'tree fanouts to compare (0: every host reads from the registry)', '2,3,4')
    .option('--host-bandwidth <rate>', 'each host\'s NIC, e.g. 10gbit', '10gbit')
    .option('--root-bandwidth <rate>', 'the root\'s NIC', '10gbit')
    .option('--registry-bandwidth <rate>', 'the registry\'s egress', '10gbit')
    .option('--rtt-ms <ms>', 'round-trip time between any two nodes', '0.2')
    .option('--unit <size>', 'fetch unit (the cache\'s refill unit)', '256K')
    .option('--window <n>', 'unit reads in flight per host', '8')
    .option('--container-start <s>', 'seconds a container needs after its data is local', '0.77')
    .option('--hop-ms <ms>', 'a node\'s own work per unit it forwards', '1')
    .option('--trace-bytes <size>', 'bytes read at start-up (default: bench/app\'s 32.8 MB)')
    .option('--blobs <sizes>', 'layer blob sizes, comma-separated (default: 120M,45M)')
    .option('--down <fraction>', 'fraction of hosts down from the start (skipped in every tree)', '0')
    .option('--csv <file>', 'write one row per container (fanout, hosts, container, seconds)')
    .option('--json', 'print one JSON object: the first fanout\'s figures, and every fanout\'s under "fanouts"')
    .action(async (opts: SimulateFlags) => {
      await runSimulate(opts);
    });
}

async function runSimulate(opts: SimulateFlags): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  const { simulate, summary } = await import('../../p2p/simulate/model.ts');
  const { defaultSetting, spreadTrace, PAPER_FIGURES, MB } = await import('../../p2p/simulate/setting.ts');
  const { resultCsv, resultTable } = await import('../../p2p/simulate/report.ts');
  const { parseSize } = await import('../../util/size.ts');
  const num = (flag: string, text: string, min: number, integer = false): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) throw new Error(`${flag} ${text}: expected ${integer ? 'an integer' : 'a number'} of at least ${min}`);
    return n;
  };
  const rate = (flag: string, text: string): number => {
    const m = /^(\d+(?:\.\d+)?)([kmg]?)bit$/i.exec(text);
    if (!m) throw new Error(`${flag} ${text}: expected a rate such as 10gbit or 100mbit`);
    return Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6, g: 1e9 } as Record<string, number>)[m[2]!.toLowerCase()]!;
  };
  const base = defaultSetting();
  const unitBytes = parseSize(opts.unit);
  const blobSizes = opts.blobs ? opts.blobs.split(',').map((s) => parseSize(s.trim())) : [120 * MB, 45 * MB];
  const traceBytes = opts.traceBytes ? parseSize(opts.traceBytes) : 32.8 * MB;
  if (traceBytes > blobSizes.reduce((a, b) => a + b, 0)) throw new Error(`--trace-bytes ${opts.traceBytes}: more than the blobs hold`);
  const hosts = num('--hosts', opts.hosts, 1, true);
  const downFraction = num('--down', opts.down, 0);
  if (downFraction >= 1) throw new Error(`--down ${opts.down}: expected a fraction below 1`);
  const down = new Set(Array.from({ length: Math.floor(hosts * downFraction) }, (_, i) => Math.floor((i * hosts) / Math.floor(hosts * downFraction))));
  const fanouts = opts.fanout.split(',').map((f) => num('--fanout', f.trim(), 0, true));
  const results = fanouts.map((fanout) => simulate({
    ...base, hosts, fanout, down, unitBytes,
    containers: num('--containers', opts.containers, 1, true),
    hostBitsPerSec: rate('--host-bandwidth', opts.hostBandwidth), rootBitsPerSec: rate('--root-bandwidth', opts.rootBandwidth),
    registryBitsPerSec: rate('--registry-bandwidth', opts.registryBandwidth), rttSec: num('--rtt-ms', opts.rttMs, 0) / 1000,
    window: num('--window', opts.window, 1, true), containerStartSec: num('--container-start', opts.containerStart, 0),
    hopSec: num('--hop-ms', opts.hopMs, 0) / 1000, trace: spreadTrace(blobSizes, traceBytes, unitBytes),
  }));
  if (opts.csv) await writeFile(opts.csv, resultCsv(results));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...summary(results[0]!), fanouts: results.map(summary) })}\n`);
    return;
  }
  process.stdout.write(`${resultTable(results)}\n\n${PAPER_FIGURES.join('\n')}\n`);
}

async function runRoot(opts: RootFlags): Promise<void> {
  {
      const { readFile } = await import('node:fs/promises');
      const { BlobCache, resolveCacheDir } = await import('../../io/cache.ts');
      const { RegistryClient } = await import('../../registry/client.ts');
      const { startRoot } = await import('../../p2p/root.ts');
      const { parseSize } = await import('../../util/size.ts');
      const { log } = await import('../../util/log.ts');
      if (!/^[^\s]+:\d{1,5}$/.test(opts.listen)) throw new Error(`--listen ${opts.listen}: expected HOST:PORT`);
      const token = opts.tokenFile ? (await readFile(opts.tokenFile, 'utf8')).trim() : '';
      if (opts.tokenFile && !token) throw new Error(`--token-file ${opts.tokenFile}: the file is empty`);
      if (!token) log.warn('p2p root without --token-file: any host that reaches it can read through its registry credentials');
      const client = new RegistryClient({ ...(opts.insecure ? { insecure: true } : {}) });
      const cache = await BlobCache.open({ dir: resolveCacheDir(opts.cacheDir), capacityBytes: parseSize(opts.cacheSize) });
      const root = await startRoot({ listen: opts.listen, token, cache, client });
      const info = { listen: root.address, cacheDir: resolveCacheDir(opts.cacheDir), pid: process.pid };
      process.stdout.write(opts.json ? `${JSON.stringify(info)}\n` : `p2p root listening on ${root.address}\n`);
      log.info(info, 'p2p root serving');
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void (async () => {
            await root.close();
            await cache.close();
            await client.close();
            log.info(root.server.stats, 'p2p root stopped');
            resolve();
          })();
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
  }
}
