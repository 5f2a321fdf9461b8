/**
 * PAX mtimes keep their nanoseconds through the applier (libuv alone rounds times to
 * microseconds, and from a double that cannot hold them exactly), on files, directories, symlinks and FIFOs, as GNU tar keeps them; found by
 * converting make-images.sh's images, whose layers carry such times.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { referenceApply } from '../apply/reference.ts';
import { RawTar, streamOf } from '../apply/tar-build.ts';

for (const helper of ['python3', 'sh + touch']) test(`PAX mtimes with nanoseconds are kept exactly, as GNU tar keeps them (${helper})`, async (t) => {
  if (!requireSystem(t, { root: true, commands: ['tar', 'touch', 'getfattr', 'mkfifo'] })) return;
  const scratch = await tempDir(t);
  if (helper !== 'python3') {
    process.env.DADI_PYTHON = join(scratch, 'no-python3');
    t.after(() => { delete process.env.DADI_PYTHON; });
  }
  const tar = new RawTar().entry({ name: 'us/', flag: '5', mode: 0o755, mtime: 1_600_000_000 });
  // Whole microseconds too: a double cannot hold them exactly either, and libuv truncates.
  const micro: Array<[string, string]> = [];
  for (let i = 0; i < 300; i++) {
    const frac = String((i * 7_919_111) % 1_000_000).padStart(6, '0');
    const stamp = `${1_795_439_000 + i}.${frac}`;
    tar.pax([['mtime', stamp]]).entry({ name: `us/${i}`, flag: '0' }, '');
    micro.push([`/us/${i}`, `${1_795_439_000 + i}${frac}000`]);
  }
  const layer = tar
    .pax([['mtime', '1795439219.957580812']]).entry({ name: 'd/', flag: '5', mode: 0o755 })
    .pax([['mtime', '1795439219.9578962']]).entry({ name: 'd/f', flag: '0', mode: 0o644 }, 'f\n')
    .pax([['mtime', '1795439219.9578962']]).entry({ name: 'd/g', flag: '0', mode: 0o644 }, 'g\n')
    .pax([['mtime', '1600000000.000000001']]).entry({ name: 'd/s', flag: '2', linkname: 'f' })
    .pax([['mtime', '1600000000.000000002']]).entry({ name: "d/it's \\ $x\nnewline", flag: '0' }, 'q\n')
    .pax([['mtime', '1600000000.123456789123']]).entry({ name: 'd/p', flag: '6', mode: 0o600 })
    // Replaced later in the layer by an entry without sub-microsecond time: that one wins.
    .pax([['mtime', '1600000000.999999999']]).entry({ name: 'd/r', flag: '0' }, 'old\n')
    .entry({ name: 'd/r', flag: '0', mtime: 1_500_000_000 }, 'new\n')
    .pax([['mtime', '1700000000.5']]).entry({ name: 'd/half', flag: '0' }, 'h\n')
    .end();
  const ours = join(scratch, 'ours');
  const ref = join(scratch, 'ref');
  await mkdir(ours);
  await mkdir(ref);
  await applyLayer(streamOf(layer), ours);
  referenceApply(ref, [layer], scratch);
  const mine = await walkTree(ours);
  assert.deepEqual(diffTrees(mine, await walkTree(ref)), []);
  assert.deepEqual(['/d', '/d/f', '/d/g', '/d/s', '/d/p', '/d/r', '/d/half'].map((p) => mine.get(p)!.mtimeNs), [
    '1795439219957580812', '1795439219957896200', '1795439219957896200', '1600000000000000001', '1600000000123456789',
    '1500000000000000000', '1700000000500000000']);
  for (const [path, ns] of micro) assert.equal(mine.get(path)!.mtimeNs, ns, path);
});
