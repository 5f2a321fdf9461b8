/**
 * `dadi convert` against the embedded registry: progress bars on a terminal, a registry source (pushed there by skopeo), reuse
 * of an already converted base layer (HEAD, then the converted lower fetched back to build on),
 * cross-repository mounts into another repository, and the pulled result mounted and compared
 * with GNU tar's extraction of the source.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { MediaType } from '../../../src/registry/media-types.ts';
import type { ImageManifest } from '../../../src/registry/oci.ts';
import { dadiArgv, repoRoot, requireSystem } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { writeOciImage } from './image-build.ts';
import { baseLayer, topLayer } from './layers.ts';
import {
  assertConformant, assertNothingRunning, assertSameTree, convert, convertNeeds, convertScratch, mountedTree, outcomes,
  referenceTree, summaryOf, type ConvertedImage,
} from './support.ts';

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function pull(url: string, repo: string, tag: string, dir: string): Promise<ConvertedImage> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${tag}`, { headers: { accept: `${MediaType.ociManifest}, ${MediaType.dockerManifest}` } });
  assert.equal(res.status, 200);
  const manifest = await res.json() as ImageManifest;
  const blob = async (digest: string) => {
    const r = await fetch(`${url}/v2/${repo}/blobs/${digest}`);
    assert.equal(r.status, 200, `${repo} has ${digest}`);
    return Buffer.from(await r.arrayBuffer());
  };
  const config = JSON.parse((await blob(manifest.config.digest)).toString('utf8')) as ConvertedImage['config'];
  const layerFiles: string[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    const file = join(dir, `${repo.replace(/\//g, '_')}-${i}.blob`);
    await writeFile(file, await blob(l.digest));
    layerFiles.push(file);
  }
  return { manifest, config, layerFiles };
}

test('registry to registry: a converted base is reused (HEAD + fetched lower), other repositories get cross-repo mounts; the pulled image equals the reference', async (t) => {
  if (!requireSystem(t, { ...convertNeeds, commands: [...convertNeeds.commands, 'skopeo', 'script'] })) return;
  const s = await convertScratch(t);
  const reg = await startEmbeddedRegistry(t);
  const base = await baseLayer();
  const top = await topLayer();
  const baseOnly = join(s.dir, 'base');
  await writeOciImage(baseOnly, 'v1', [base], 'gzip');
  const app = join(s.dir, 'app');
  const built = await writeOciImage(app, 'v1', [base, top], ['gzip', 'zstd']);
  // Asynchronously: the embedded registry answers skopeo from this very process.
  await promisify(execFile)('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${app}:v1`, `docker://${reg.hostPort}/src/app:v1`]);

  // On an 80-column terminal (script(1) gives it a pty): a progress bar per layer that fits the
  // width (cli-progress cuts longer lines), then the summary.
  const [node, args] = dadiArgv(['convert', `oci:${baseOnly}:v1`, `${reg.hostPort}/x/app:base`, '--progress', '--cache-dir', s.cacheDir]);
  const tty = await promisify(execFile)('script', ['-qefc', `stty cols 80 rows 24; ${[node, ...args].map(shellQuote).join(' ')}`, '/dev/null'],
    { env: { ...process.env, TMPDIR: s.tmp }, cwd: repoRoot });
  const screen = tty.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  assert.match(screen, /layer 0 \|[█░]+\| 100% \| converted [0-9a-f]{12} [\d.]+[KMG]?i?B [\d.]+ s/);
  // The percentage is right-aligned ("  0%"): the apply frame may be drawn before any progress.
  assert.match(screen, /layer 0 \|[█░]+\| *\d+% \| apply/, 'the bar follows the steps');
  assert.match(screen, new RegExp(`converted oci:${baseOnly}:v1 -> ${reg.hostPort}/x/app:base \\(sha256:[0-9a-f]{64}\\)`));
  assert.match(screen, /layers: 1 \(0 reused\)\r?\n\s+bytes in: \S+.*, bytes out: \S+.*\r?\n\s+time: [\d.]+ s \([\d.]+ MB\/s of source layers\)/);

  // The base layer's chainID is recorded: HEAD finds it in x/app; the top layer is built on it.
  const r2 = await convert(s, `${reg.hostPort}/src/app:v1`, `${reg.hostPort}/x/app:v1`);
  const sum2 = summaryOf(r2);
  assert.deepEqual(outcomes(r2), ['reused', 'converted']);
  assert.deepEqual(r2.events.filter((e) => e.step === 'fetch-lower').map((e) => e.layer), [0]);
  assert.equal(sum2.bytesIn, built.layerSizes[1]);

  // Another repository of the same registry: every blob mounted across, nothing converted or uploaded.
  const r3 = await convert(s, `${reg.hostPort}/src/app:v1`, `${reg.hostPort}/y/app:v1`);
  const sum3 = summaryOf(r3);
  assert.deepEqual(outcomes(r3), ['mounted', 'mounted']);
  assert.equal(r3.events.filter((e) => ['mount', 'fetch-lower', 'push'].includes(e.step)).length, 0);
  assert.deepEqual([sum3.bytesIn, sum3.manifestDigest], [0, sum2.manifestDigest]);
  await assertNothingRunning(s.dir);

  const img = await pull(reg.url, 'y/app', 'v1', s.dir);
  await assertConformant(s, img, built.diffIds, { vsize: 64 * 2 ** 30, algo: 'lz4' });
  assertSameTree(await mountedTree(s, img.layerFiles, 'registry'), await referenceTree(s, [base, top], 'registry'));
});
