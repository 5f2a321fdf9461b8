/**
 * Plumbing of the conversion system tests: running `dadi convert` with private cache and temp
 * directories, mounting converted layer blobs with `dadi mount`, comparing the mounted tree with
 * GNU tar's extraction of the source, checking each converted blob against the formats, and
 * proving that nothing (mount, loop device, process) outlived a conversion.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openLayer } from '../../../src/format/open-layer.ts';
import { NULL_UUID } from '../../../src/format/lsmt/header.ts';
import { chunkDigests, parseTableRef, tableFromMember, TABLE_MEMBER_NAME } from '../../../src/format/tar/digest-table.ts';
import { chainIdToUuid, chainIds } from '../../../src/image/chain-id.ts';
import { ANNOTATION, OVERLAYBD_VERSION } from '../../../src/image/convert/index.ts';
import { OciLayout } from '../../../src/image/oci-layout.ts';
import type { ImageManifest } from '../../../src/registry/oci.ts';
import { runDadi, tempDir, type RunResult } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { forceCleanup, hostNeeds } from '../../host/support.ts';
import { referenceApply } from '../apply/reference.ts';

export const convertNeeds = {
  ...hostNeeds,
  commands: [...hostNeeds.commands, 'tar', 'getfattr', 'mknod', 'mkfifo'],
};

export interface ConvertScratch {
  dir: string;
  /** DADI_STATE_DIR for `dadi mount`. */
  stateDir: string;
  /** TMPDIR of every `dadi convert`: its per-layer mounts and sockets live below it. */
  tmp: string;
  cacheDir: string;
}

export async function convertScratch(t: TestContext): Promise<ConvertScratch> {
  const dir = await tempDir(t, 'dadi-convert-');
  const s = { dir, stateDir: join(dir, 'state'), tmp: join(dir, 'tmp'), cacheDir: join(dir, 'cache') };
  await Promise.all([mkdir(s.stateDir), mkdir(s.tmp), mkdir(s.cacheDir)]);
  // Registered after tempDir's removal, so it runs first: nothing mounted is ever rm'd.
  t.after(async () => {
    await forceCleanup(s.stateDir);
    lazyUnmountUnder(s.dir);
  });
  return s;
}

/** Last resort after a failed test: whatever a conversion left mounted below `dir`. */
function lazyUnmountUnder(dir: string): void {
  for (const m of mountsUnder(dir).reverse()) {
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* gone already */ }
  }
}

export function mountsUnder(dir: string): string[] {
  const text = execFileSync('cat', ['/proc/self/mounts'], { encoding: 'utf8' });
  return text.split('\n').map((l) => l.split(' ')[1] ?? '').filter((p) => p.startsWith(`${dir}/`));
}

function loopsUnder(dir: string): string[] {
  const out = JSON.parse(execFileSync('losetup', ['-l', '-J'], { encoding: 'utf8' }) || '{"loopdevices":[]}') as
    { loopdevices: Array<{ name: string; 'back-file': string | null }> };
  return out.loopdevices.filter((l) => (l['back-file'] ?? '').includes(dir)).map((l) => l.name);
}

async function processesMentioning(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(dir)) out.push(`${pid}: ${cmd.replace(/\0/g, ' ')}`);
  }
  return out;
}

/** No mount, loop device or process refers to anything below `dir`. */
export async function assertNothingRunning(dir: string): Promise<void> {
  assert.deepEqual(mountsUnder(dir), [], 'a conversion left a mount behind');
  assert.deepEqual(loopsUnder(dir), [], 'a conversion left a loop device behind');
  assert.deepEqual(await processesMentioning(dir), [], 'a conversion left a process behind');
}

export interface ConvertRun { result: RunResult; events: Array<Record<string, unknown> & { step: string }> }

/** `dadi convert SRC DST --json` with the scratch's cache and temp directories. */
export async function convert(s: ConvertScratch, src: string, dst: string, extra: string[] = []): Promise<ConvertRun> {
  const result = await runDadi(['convert', src, dst, '--json', '--cache-dir', s.cacheDir, ...extra], { env: { TMPDIR: s.tmp } });
  const lines = result.stdout.toString().split('\n').filter(Boolean);
  const events = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { step: string });
  return { result, events };
}

export function summaryOf(run: ConvertRun): { layers: number; reusedLayers: number; bytesIn: number; bytesOut: number; seconds: number; manifestDigest: string; layerDigests: string[] } {
  assert.equal(run.result.code, 0, `dadi convert failed: ${run.result.stderr}`);
  const last = run.events[run.events.length - 1]!;
  assert.equal(last.step, 'summary');
  return last as unknown as ReturnType<typeof summaryOf>;
}

/** The outcome ('converted' | 'reused' | 'mounted') of each layer, from the JSON lines. */
export function outcomes(run: ConvertRun): string[] {
  return run.events.filter((e) => e.step === 'layer-done').map((e) => e.how as string);
}

/**
 * Mounts the converted layer files read-only with `dadi mount`, walks the tree (lost+found, made
 * by mkfs, left out), unmounts.
 */
export async function mountedTree(s: ConvertScratch, layerFiles: string[], name: string): Promise<Awaited<ReturnType<typeof walkTree>>> {
  const mnt = join(s.dir, `mnt-${name}`);
  await mkdir(mnt);
  const env = { DADI_STATE_DIR: s.stateDir };
  const m = await runDadi(['mount', ...layerFiles, mnt], { env });
  assert.equal(m.code, 0, `dadi mount failed: ${m.stderr}`);
  try {
    return await walkTree(mnt, { exclude: ['/lost+found'] });
  } finally {
    const u = await runDadi(['umount', mnt], { env });
    assert.equal(u.code, 0, `dadi umount failed: ${u.stderr}`);
  }
}

/** GNU tar's extraction of the layer tars, one after another, whiteouts applied. */
export async function referenceTree(s: ConvertScratch, tars: Buffer[], name: string): Promise<Awaited<ReturnType<typeof walkTree>>> {
  const ref = join(s.dir, `ref-${name}`);
  await mkdir(ref);
  referenceApply(ref, tars, s.dir);
  return walkTree(ref);
}

/** Every difference between the mounted conversion and the reference; fails on any. */
export function assertSameTree(mine: Awaited<ReturnType<typeof walkTree>>, ref: Awaited<ReturnType<typeof walkTree>>): void {
  const diff = diffTrees(mine, ref);
  assert.deepEqual(diff, [], `the converted image differs from the reference extraction:\n${diff.slice(0, 40).join('\n')}`);
  assert.ok(ref.size > 0);
}

async function fileDigest(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export interface ConvertedImage { manifest: ImageManifest; config: Record<string, unknown> & { rootfs: { diff_ids: string[] } }; layerFiles: string[] }

/** Reads the converted image from a layout (assertConformant checks the layer blobs' digests). */
export async function readConverted(dir: string, tag: string): Promise<ConvertedImage> {
  const layout = new OciLayout(dir);
  const m = await layout.resolve(tag, { os: 'linux', architecture: 'amd64' });
  const config = JSON.parse((await layout.readBlob(m.json.config.digest, m.json.config.size)).toString('utf8')) as ConvertedImage['config'];
  return { manifest: m.json, config, layerFiles: m.json.layers.map((l) => layout.blobPath(l.digest)) };
}

/**
 * The conformance of a converted image (formats.md §2.4, §7.7): each layer is one tar member
 * holding a CRC-checked ZFile of an LSMT layer whose UUID comes from the chainID and whose parent
 * is the layer below; config diff_ids are the blob digests; layers carry the overlaybd annotations.
 */
export async function assertConformant(s: ConvertScratch, img: ConvertedImage, sourceDiffIds: string[], opts: { vsize: number; algo: 'lz4' | 'zstd' | 'none'; blockSize?: number; decompress?: boolean }): Promise<void> {
  const chains = chainIds(sourceDiffIds);
  assert.equal(img.manifest.layers.length, sourceDiffIds.length);
  assert.deepEqual(img.config.rootfs.diff_ids, img.manifest.layers.map((l) => l.digest), 'config diff_ids are the blob digests');
  for (const [i, l] of img.manifest.layers.entries()) {
    const tableText = l.annotations?.[ANNOTATION.verifyTable] ?? '';
    assert.deepEqual(l.annotations, { [ANNOTATION.digest]: l.digest, [ANNOTATION.size]: String(l.size), [ANNOTATION.version]: OVERLAYBD_VERSION,
      [ANNOTATION.verifyTable]: tableText });
    const file = img.layerFiles[i]!;
    assert.equal(await fileDigest(file), l.digest);
    // The chunk digest table: its member hashes to the annotation, its chunks to the bytes before it.
    const ref = parseTableRef(tableText);
    assert.ok(ref, `layer ${i}: verify-table annotation ${JSON.stringify(tableText)}`);
    const blob = await readFile(file);
    const member = blob.subarray(ref.offset);
    assert.equal(member.length, ref.length);
    assert.equal(`sha256:${createHash('sha256').update(member).digest('hex')}`, ref.digest);
    const table = tableFromMember(member, file, ref.offset);
    assert.deepEqual(Buffer.from(table.digests), Buffer.from(chunkDigests(blob.subarray(0, ref.offset), table.chunkSize)));
    // GNU tar reads the wrapper: the layer member, then the table member.
    const members = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
    assert.deepEqual(members, ['overlaybd.commit', TABLE_MEMBER_NAME], `layer ${i} members: ${members.join(', ')}`);
    const layer = await openLayer(file);
    try {
      assert.deepEqual(layer.wrappers.map((w) => w.kind), opts.algo === 'none' ? ['tar'] : ['tar', 'zfile']);
      const z = layer.wrappers[1];
      if (opts.algo !== 'none') assert.ok(z?.kind === 'zfile' && z.algo === opts.algo && z.checksum && z.blockSize === (opts.blockSize ?? 4096), `layer ${i}: ${JSON.stringify(z)}`);
      assert.equal(layer.kind, 'committed');
      assert.equal(layer.uuid, chainIdToUuid(chains[i]!));
      assert.equal(layer.parentUuid, i === 0 ? NULL_UUID : chainIdToUuid(chains[i - 1]!));
      assert.equal(layer.virtualSize, opts.vsize);
    } finally {
      await layer.close();
    }
    // Every block's CRC, through the CLI's decompressor; the payload is a plain LSMT layer.
    if (opts.decompress === false || opts.algo === 'none') continue;
    const raw = join(s.dir, `layer-${i}.lsmt`);
    const d = await runDadi(['zfile', 'decompress', '--verify', file, raw]);
    assert.equal(d.code, 0, d.stderr);
    const plain = await openLayer(raw);
    try {
      assert.deepEqual(plain.wrappers, []);
      assert.equal(plain.uuid, chainIdToUuid(chains[i]!));
    } finally {
      await plain.close();
    }
  }
}
