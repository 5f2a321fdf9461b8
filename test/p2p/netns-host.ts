/**
 * One host of the multi-host test (run inside its network namespace): attaches the image (with
 * its P2P agent when given a [p2p] config, else straight from the registry), prints
 * `{"agent":…}` once its agent listens, waits for a line, attaches, prints `{"attached":…}`, waits for a line on stdin, reads the trace (disk ranges) with a few reads in
 * flight, and prints `{"sha256":…, "seconds":…}` over the bytes read in trace order. It then
 * keeps serving its children until stdin closes.
 *
 *   node --import tsx test/p2p/netns-host.ts '{"ref":…,"cacheDir":…,"p2pConfig":…,"ranges":[[off,len],…]}'
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { openRemoteImage } from '../../src/image/remote.ts';
import { loadP2PConfig } from '../../src/p2p/config.ts';
import { startP2PHost, type P2PHost } from '../../src/p2p/host.ts';

interface Args { ref: string; cacheDir: string; p2pConfig?: string; ranges: Array<[number, number]>; parallel?: number }

const args = JSON.parse(process.argv[2]!) as Args;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
let host: P2PHost | undefined;
try {
  host = args.p2pConfig ? await startP2PHost(await loadP2PConfig(args.p2pConfig), { cacheDir: args.cacheDir, client: { insecure: true } }) : undefined;
  // Every agent listens before any host attaches (attach already reads through the tree).
  process.stdout.write(`${JSON.stringify({ agent: Boolean(host) })}\n`);
  await lines.next();
  const image = await openRemoteImage(args.ref, {
    insecure: true, cacheDir: args.cacheDir, background: { enable: false }, logStatsOnClose: false, statsIntervalMs: 0,
    ...(host ? { cache: host.cache, client: host.client, routes: [host.agent.route] } : {}),
  });
  process.stdout.write(`${JSON.stringify({ attached: true, attachBytes: image.info.attach.bytes })}\n`);
  await lines.next();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const bufs = args.ranges.map(([, len]) => Buffer.alloc(len));
  let next = 0;
  await Promise.all(Array.from({ length: args.parallel ?? 4 }, async () => {
    for (let i = next++; i < args.ranges.length; i = next++) await image.disk.read(bufs[i]!, args.ranges[i]![0]);
  }));
  const seconds = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu0);
  const cpuSeconds = (used.user + used.system) / 1e6;
  const hash = createHash('sha256');
  for (const b of bufs) hash.update(b);
  process.stdout.write(`${JSON.stringify({ sha256: hash.digest('hex'), seconds, cpuSeconds, served: host?.agent.stats?.bytes ?? 0 })}\n`);
  await lines.next(); // serve children until told to stop
  await image.close();
  await host?.close();
  process.exit(0);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).stack ?? String(err) })}\n`);
  await host?.close().catch(() => {});
  process.exit(1);
}
