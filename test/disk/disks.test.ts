/**
 * The shared disk suite (disk-suite.ts) run against every Disk implementation and disk filter:
 * the in-memory disk (writable, read-only, without an allocation map), the layer stack read-only
 * over committed layers (plain and ZFile), the layer stack with a writable layer on top, the
 * pass-through DiskFilter over it, and a remote image's disk (registry → cache → layers → stack).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';
import { DiskFilter } from '../../src/disk/filter.ts';
import { MemoryDisk } from '../../src/disk/memory-disk.ts';
import { commitToFile, type CommitFileOptions } from '../../src/format/lsmt/commit-file.ts';
import { createWritableLayer } from '../../src/format/lsmt/writable.ts';
import { openStackFromFiles } from '../../src/image/chain/files.ts';
import { openRemoteImage } from '../../src/image/remote.ts';
import { tempDir } from '../helpers/env.ts';
import { diskSuite } from './disk-suite.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { buildObdImage, pushObdImage } from '../image/remote/fixture.ts';

const SIZE = 4 << 20;
const scratch = await mkdtemp(join(tmpdir(), 'dadi-disks-'));
after(() => rm(scratch, { recursive: true, force: true }));

function pattern(len: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => ((seed * 131 + i * 7 + (i >>> 10)) & 255) || 1);
}

/** A committed layer holding `writes` (sector-aligned), and the model after applying them over `below`. */
async function committedLayer(name: string, writes: Array<[number, number, number]>, below: Uint8Array, opts: CommitFileOptions): Promise<{ path: string; model: Uint8Array }> {
  const model = Uint8Array.from(below);
  const layer = await createWritableLayer(join(scratch, `${name}.data`), join(scratch, `${name}.index`), { virtualSize: SIZE });
  for (const [sector, sectors, seed] of writes) {
    const data = pattern(sectors * 512, seed);
    await layer.write(data, sector * 512);
    model.set(data, sector * 512);
  }
  const path = join(scratch, `${name}.lsmt`);
  await commitToFile({ index: layer.snapshot(), data: layer.data, virtualSize: SIZE }, path, opts);
  await layer.close();
  return { path, model };
}

const lower = await committedLayer('lower', [[0, 64, 1], [2048, 300, 2], [7000, 8, 3]], new Uint8Array(SIZE), {});
const upper = await committedLayer('upper', [[32, 64, 4], [2100, 16, 5], [8000, 100, 6]], lower.model, { compress: 'zstd', tar: true });

diskSuite({ name: 'MemoryDisk', expected: () => new Uint8Array(SIZE), open: async () => new MemoryDisk(SIZE) });
diskSuite({ name: 'MemoryDisk (read-only)', expected: () => upper.model, open: async () => MemoryDisk.from(upper.model, { readOnly: true }) });
diskSuite({ name: 'MemoryDisk (no allocation map)', expected: () => lower.model, open: async () => MemoryDisk.from(lower.model, { extents: false }) });
diskSuite({ name: 'LayerStack (read-only: plain + tar(ZFile zstd))', expected: () => upper.model, open: () => openStackFromFiles([lower.path, upper.path]) });

async function writableStack(t: TestContext) {
  const dir = await tempDir(t);
  const data = join(dir, 'rw.data');
  const index = join(dir, 'rw.index');
  await (await createWritableLayer(data, index, { virtualSize: 0, tag: 2 })).close();
  return openStackFromFiles([lower.path, upper.path], { upper: { data, index } });
}
diskSuite({ name: 'LayerStack (writable layer on top)', expected: () => upper.model, open: writableStack });
diskSuite({ name: 'DiskFilter (pass-through) over a writable stack', expected: () => upper.model, open: async (t) => new DiskFilter(await writableStack(t)) });

diskSuite({
  name: 'remote image disk (registry → cache → layers → stack)', expected: () => upper.model, runs: 20,
  async open(t) {
    const reg = await startEmbeddedRegistry(t);
    await pushObdImage(reg.hostPort, 'suite/disk', 'v1', await buildObdImage([lower.path, upper.path]));
    const ref = `${reg.hostPort}/suite/disk:v1`;
    const img = await openRemoteImage(ref, { insecure: true, cacheDir: await tempDir(t, 'dadi-cache-'), background: { enable: false }, logStatsOnClose: false });
    return img.disk;
  },
});
