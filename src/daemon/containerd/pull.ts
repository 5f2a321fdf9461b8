/**
 * `dadi pull`: a lazy pull of a dadi image into containerd, what `ctr-remote image rpull` does,
 * with containerd's own API only: the manifest (and index) and the config go into containerd's
 * content store with the garbage-collection labels containerd's own pull sets, then each layer is
 * Prepared through containerd with the chain ID as target and the layer's overlaybd annotations
 * plus the image reference as labels, which the dadi snapshotter commits on the spot (answering
 * AlreadyExists), and finally the image record. No layer blob is fetched. A lease protects what
 * is written until the image record references it.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../../errors.ts';
import { AnnotationError, isTurboVersion, recogniseLayer } from '../../image/annotations.ts';
import { chainIds } from '../../image/chain-id.ts';
import { RegistryClient } from '../../registry/client.ts';
import type { Descriptor, Platform } from '../../registry/oci.ts';
import { formatReference, parseReference, referenceTarget } from '../../registry/reference.ts';
import { ContainerdClient, isCode } from './client.ts';

export interface PullOptions {
  address: string;
  namespace: string;
  snapshotter: string;
  insecure?: boolean;
  platform?: Platform;
  /** Progress lines (one per step). */
  progress?: (line: string) => void;
}

export interface PullResult {
  name: string;
  manifestDigest: string;
  layers: number;
  /** Layers the snapshotter committed now (the rest existed already). */
  prepared: number;
  registry: { bytes: number; requests: number };
  seconds: number;
}

const INHERITED = 'containerd.io/snapshot/';
const TARGET_REF = 'containerd.io/snapshot.ref';
const IMAGE_REF = 'containerd.io/snapshot/image-ref';

export async function pullImage(ref: string, opts: PullOptions): Promise<PullResult> {
  const started = performance.now();
  const progress = opts.progress ?? (() => {});
  const say = (line: string): void => progress(`[${((performance.now() - started) / 1000).toFixed(2)} s] ${line}`);
  const parsed = parseReference(ref);
  const name = formatReference(parsed);
  const registry = new RegistryClient({ ...(opts.insecure ? { insecure: true } : {}), ...(opts.platform ? { platform: opts.platform } : {}) });
  const ctd = new ContainerdClient(opts.address, opts.namespace);
  try {
    const resolved = await registry.manifests.resolve(parsed, referenceTarget(parsed), opts.platform ?? registry.platform);
    const manifest = resolved.manifest;
    checkLayers(manifest.json.layers, name, opts.snapshotter);
    const cfgDesc = manifest.json.config;
    const configBytes = await registry.blobs.get(parsed, cfgDesc.digest, cfgDesc.size);
    const diffIds = diffIdsOf(configBytes, name, manifest.json.layers.length);
    const chain = chainIds(diffIds);
    say(`resolved ${name}: manifest ${manifest.digest}, ${chain.length} layers`);

    await ctd.createLease(`dadi-pull-${randomBytes(8).toString('hex')}`, 3600);
    say('lease created');
    const source = { [`containerd.io/distribution.source.${parsed.registry}`]: parsed.repository };
    await ctd.writeContent(cfgDesc.digest, configBytes, source);
    const manifestLabels: Record<string, string> = { ...source, 'containerd.io/gc.ref.content.config': cfgDesc.digest };
    manifest.json.layers.forEach((l, i) => { manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest; });
    await ctd.writeContent(manifest.digest, manifest.bytes, manifestLabels);
    if (resolved.index) {
      const indexLabels: Record<string, string> = { ...source };
      resolved.index.json.manifests.forEach((m, i) => { indexLabels[`containerd.io/gc.ref.content.m.${i}`] = m.digest; });
      await ctd.writeContent(resolved.index.digest, resolved.index.bytes, indexLabels);
    }

    say('manifest and config stored in containerd');
    const sn = ctd.snapshots(opts.snapshotter);
    let prepared = 0;
    for (const [i, layer] of manifest.json.layers.entries()) {
      const chainId = chain[i]!;
      const exists = await sn.stat(chainId).then(() => true, (err: unknown) => {
        if (isCode(err, grpc.status.NOT_FOUND)) return false;
        throw err;
      });
      if (exists) continue;
      const labels: Record<string, string> = { [TARGET_REF]: chainId, [IMAGE_REF]: name };
      for (const [k, v] of Object.entries(layer.annotations ?? {})) if (k.startsWith(INHERITED)) labels[k] = v;
      const key = `extract-${randomBytes(6).toString('hex')} ${chainId}`;
      try {
        await sn.prepare(key, i === 0 ? '' : chain[i - 1]!, labels);
      } catch (err) {
        if (isCode(err, grpc.status.ALREADY_EXISTS)) {
          prepared++;
          say(`layer ${i} ${layer.digest}: committed remotely as ${chainId}`);
          continue;
        }
        throw new Error(`layer ${i} (${layer.digest}): snapshotter ${opts.snapshotter}: ${errorMessage(err)}`, { cause: err });
      }
      // The snapshotter made an ordinary snapshot for containerd to unpack: it did not take the layer lazily.
      await sn.remove(key).catch(() => {});
      throw new Error(`snapshotter ${JSON.stringify(opts.snapshotter)} did not pull layer ${i} (${layer.digest}) of ${name} lazily; ` +
        'is it the dadi snapshotter (check containerd\'s [proxy_plugins] and --snapshotter)?');
    }
    await ctd.updateContentLabels(cfgDesc.digest, { [`containerd.io/gc.ref.snapshot.${opts.snapshotter}`]: chain[chain.length - 1]! });
    const target = resolved.index
      ? { media_type: resolved.index.mediaType, digest: resolved.index.digest, size: resolved.index.bytes.length }
      : { media_type: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
    await ctd.putImage(name, target);
    await ctd.deleteLease();
    say(`image ${name} is ready for snapshotter ${opts.snapshotter}`);
    return {
      name, manifestDigest: manifest.digest, layers: chain.length, prepared,
      registry: { bytes: registry.stats.bytes, requests: registry.stats.requests },
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await ctd.deleteLease().catch(() => {});
    ctd.close();
    await registry.close();
  }
}

/**
 * Every layer must be a native dadi/overlaybd layer the snapshotter can take lazily (importing
 * the recogniser alone keeps `dadi pull` from loading the whole data path).
 */
function checkLayers(layers: readonly Descriptor[], name: string, snapshotter: string): void {
  for (const [i, d] of layers.entries()) {
    const obd = recogniseLayer(d, `${name}: layer ${i} (${d.digest})`);
    if (!obd) {
      throw new AnnotationError(`${name} is not a dadi/overlaybd image: layer ${i} (${d.digest}) has no containerd.io/snapshot/overlaybd/blob-digest ` +
        `annotation; pull it with ctr image pull --snapshotter ${snapshotter}, or convert it first with dadi convert`);
    }
    if (isTurboVersion(obd.version)) throw new AnnotationError(`${name}: layer ${i} is a turboOCI layer (${obd.version}), which dadi does not attach`);
    if (obd.accelerationLayer) {
      throw new AnnotationError(`${name} has an acceleration (trace) layer, which needs containerd to unpack it; pull it with ctr-remote image rpull --snapshotter ${snapshotter}`);
    }
  }
}

function diffIdsOf(config: Buffer, name: string, layers: number): string[] {
  let json: { rootfs?: { diff_ids?: unknown } };
  try {
    json = JSON.parse(config.toString('utf8')) as typeof json;
  } catch (err) {
    throw new Error(`${name}: the image config is not JSON: ${errorMessage(err)}`);
  }
  const ids = json.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.length !== layers || ids.some((d) => typeof d !== 'string')) {
    throw new Error(`${name}: the config's rootfs.diff_ids (${Array.isArray(ids) ? ids.length : 'none'}) do not match the manifest's ${layers} layers`);
  }
  return ids as string[];
}
