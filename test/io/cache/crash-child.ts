/**
 * Child process for the kill -9 test: caches the units named on the command line through the
 * cache at DIR from URL, prints "cached" once they are read, then waits to be killed (never
 * closing the cache, so only the periodic map flush can have persisted anything).
 */
import { Registry } from 'prom-client';
import { BlobCache } from '../../../src/io/cache.ts';
import { HttpTestSource } from './http-source.ts';

const [dir, url, digest, sizeText, unitText, ...units] = process.argv.slice(2);
const size = Number(sizeText);
const unit = Number(unitText);
const cache = await BlobCache.open({ dir: dir!, capacityBytes: 1 << 30, refillUnit: unit, metricsRegistry: new Registry() });
const src = await cache.open(digest!, size, new HttpTestSource(url!, size));
for (const u of units) await src.read(new Uint8Array(unit), Number(u) * unit);
process.stdout.write('cached\n');
setInterval(() => {}, 1000);
