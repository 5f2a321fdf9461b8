/**
 * The default setting of `dadi p2p simulate` and bench/p2p.bench.ts: a data center as in the
 * DADI paper's large-scale start-up (1,000 hosts, 10,000 containers), with figures stated here:
 *
 * - the start-up set is bench/app's cold read through the snapshotter (32.8 MB of its two layer
 *   blobs, 256 KiB refill units; README "Run containers"), its units spread over the blobs in
 *   read order (the offsets themselves do not change the model);
 * - each host has a 10 Gbit/s NIC, the root and the registry 10 Gbit/s each, RTT 0.2 ms;
 * - a host keeps 8 unit reads in flight (parallel reads plus read-ahead);
 * - a container needs 0.77 s after its data is local (bench/app's warm start on main);
 * - a node spends 1 ms on each unit it forwards (cache write, read back, HTTP) before sending it.
 *
 * The paper does not publish its simulation parameters; these are assumptions of the same kind.
 */
import type { SimOptions, SimTrace } from './model.ts';

export const MB = 1e6;

/** A start-up trace of `traceBytes` over blobs of `blobSizes`, read in order, spread evenly. */
export function spreadTrace(blobSizes: readonly number[], traceBytes: number, unitBytes: number): SimTrace {
  const blobs = blobSizes.map((size, i) => ({ digest: `sha256:${String(i + 1).padStart(64, '0')}`, size }));
  const total = blobSizes.reduce((s, n) => s + n, 0);
  const units: Array<[number, number]> = [];
  for (const [b, blob] of blobs.entries()) {
    const have = Math.ceil(blob.size / unitBytes);
    const want = Math.min(have, Math.round((traceBytes * (blob.size / total)) / unitBytes));
    for (let i = 0; i < want; i++) units.push([b, Math.floor((i * have) / want)]);
  }
  return { blobs, units };
}

export function defaultSetting(): Omit<SimOptions, 'fanout'> {
  const unitBytes = 256 * 1024;
  return {
    hosts: 1000,
    containers: 10_000,
    hostBitsPerSec: 10e9,
    rootBitsPerSec: 10e9,
    registryBitsPerSec: 10e9,
    rttSec: 0.0002,
    unitBytes,
    window: 8,
    containerStartSec: 0.77,
    hopSec: 0.001,
    trace: spreadTrace([120 * MB, 45 * MB], 32.8 * MB, unitBytes),
  };
}

/** What the paper reports, printed beside the simulation. */
export const PAPER_FIGURES = [
  'DADI paper (USENIX ATC 2020), large-scale start-up: 10,000 containers on 1,000 hosts within about 4 s (3-4 s),',
  'the registry serving about one copy of each blob; Figure 21 (projected start-up time by tree fanout): time grows',
  'with log(hosts), and a binary tree is best below about 20,000 hosts.',
];
