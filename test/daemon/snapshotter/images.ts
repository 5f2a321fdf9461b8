/**
 * Images for the containerd tests, in a real docker-registry behind a byte-counting proxy:
 * - `test/app:oci`: an ordinary 3-layer gzip OCI image (busybox for a shell; a file only in the
 *   bottom layer, a file the top layer deletes with a whiteout, a file only in the top layer, and
 *   incompressible filler so that what a container start reads is a small part of the image);
 * - `test/app:obd`: the same image converted by `dadi convert`;
 * - `test/vectors:obd`: the overlaybd ext4 vectors (written by overlaybd's own tools) pushed
 *   byte for byte with their overlaybd annotations.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runDadi, tempDir, vector } from '../../helpers/env.ts';
import { startCountingProxy, type CountingProxy } from '../../helpers/counting-proxy.ts';
import { startDockerRegistry, type TestRegistry } from '../../helpers/registry.ts';
import { packTar } from '../../image/apply/tar-build.ts';
import { writeOciImage } from '../../image/convert/image-build.ts';
import { buildObdImage, pushObdImage } from '../../image/remote/fixture.ts';
import { RegistryClient } from '../../../src/registry/client.ts';

const run = promisify(execFile);

export const BOTTOM_TEXT = 'from the bottom layer\n';
export const TOP_TEXT = 'from the top layer\n';
/** A command whose output proves the container sees every layer: bottom file, whiteout, top file. */
export const PROOF_CMD = ['/bin/sh', '-c', 'cat /bottom.txt /etc/top.txt; test -e /gone.txt && echo gone-still-there || echo whiteout-applied; echo middle=$(cat /middle.txt)'];
export const PROOF_OUT = `${BOTTOM_TEXT}${TOP_TEXT}whiteout-applied\nmiddle=middle\n`;

export interface PublishedImages {
  registry: TestRegistry;
  proxy: CountingProxy;
  /** References through the proxy. */
  oci: string;
  obd: string;
  vectors: string;
  /** Layer blob digests and total size of each image. */
  obdLayers: { digests: string[]; bytes: number };
  vectorLayers: { digests: string[]; bytes: number };
}

async function appTars(): Promise<Buffer[]> {
  const busybox = await readFile('/bin/busybox');
  const filler = (n: number): Buffer => randomBytes(n);
  const base = await packTar([
    { name: 'bin', type: 'directory', mode: 0o755 },
    { name: 'bin/busybox', mode: 0o755, data: busybox },
    ...['sh', 'cat', 'echo', 'test', 'ls', 'sleep', 'touch'].map((n) => ({ name: `bin/${n}`, type: 'symlink' as const, linkname: 'busybox' })),
    { name: 'etc', type: 'directory', mode: 0o755 },
    { name: 'tmp', type: 'directory', mode: 0o1777 },
    { name: 'bottom.txt', mode: 0o644, data: BOTTOM_TEXT },
    { name: 'gone.txt', mode: 0o644, data: 'deleted by the top layer\n' },
    { name: 'filler/base.bin', mode: 0o644, data: filler(26 << 20) },
  ]);
  const middle = await packTar([
    { name: 'middle.txt', mode: 0o644, data: 'middle' },
    { name: 'filler', type: 'directory', mode: 0o755 },
    { name: 'filler/middle.bin', mode: 0o644, data: filler(20 << 20) },
  ]);
  const top = await packTar([
    { name: '.wh.gone.txt', mode: 0o644, data: '' },
    { name: 'etc', type: 'directory', mode: 0o755 },
    { name: 'etc/top.txt', mode: 0o644, data: TOP_TEXT },
    { name: 'filler', type: 'directory', mode: 0o755 },
    { name: 'filler/top.bin', mode: 0o644, data: filler(12 << 20) },
  ]);
  return [base, middle, top];
}

async function layerBlobs(client: RegistryClient, ref: string): Promise<{ digests: string[]; bytes: number }> {
  const [hostPort, rest] = [ref.slice(0, ref.indexOf('/')), ref.slice(ref.indexOf('/') + 1)];
  const [repository, tag] = rest.split(':') as [string, string];
  const { manifest } = await client.manifests.resolve({ registry: hostPort, repository }, tag);
  return { digests: manifest.json.layers.map((l) => l.digest), bytes: manifest.json.layers.reduce((s, l) => s + l.size, 0) };
}

export async function publishImages(t: TestContext): Promise<PublishedImages> {
  const registry = await startDockerRegistry(t);
  const proxy = await startCountingProxy(t, registry.url);
  const dir = await tempDir(t, 'dadi-snap-img-');
  await writeOciImage(join(dir, 'layout'), 'v1', await appTars(), 'gzip');
  const oci = `${proxy.hostPort}/test/app:oci`;
  const obd = `${proxy.hostPort}/test/app:obd`;
  const vectors = `${proxy.hostPort}/test/vectors:obd`;
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${join(dir, 'layout')}:v1`, `docker://${oci}`]);
  const conv = await runDadi(['convert', `oci:${join(dir, 'layout')}:v1`, obd, '--cache-dir', join(dir, 'cache')], { env: { TMPDIR: dir } });
  if (conv.code !== 0) throw new Error(`dadi convert failed: ${conv.stderr}`);
  const img = await buildObdImage([vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')]);
  await pushObdImage(proxy.hostPort, 'test/vectors', 'obd', img);
  const client = new RegistryClient();
  try {
    const out = { registry, proxy, oci, obd, vectors, obdLayers: await layerBlobs(client, obd), vectorLayers: await layerBlobs(client, vectors) };
    proxy.reset();
    return out;
  } finally {
    await client.close();
  }
}
