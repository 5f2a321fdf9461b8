/**
 * Reading a remote image's manifest and config the overlaybd way: every layer recognised by its
 * annotations (acceleration layers set apart), the config checked, the platform taken from it.
 */
import { errorMessage } from '../../errors.ts';
import type { Descriptor, ImageManifest, Platform } from '../../registry/oci.ts';
import { log } from '../../util/log.ts';
import { AnnotationError, isTurboVersion, recogniseLayer, type OverlaybdLayer } from '../annotations.ts';

export interface Recognised { d: Descriptor; index: number; obd: OverlaybdLayer }

/** Every layer's overlaybd view; refuses images that are not dadi/overlaybd. */
export function recogniseManifest(manifest: ImageManifest, reference: string): { disk: Recognised[]; acceleration: Recognised[] } {
  if (manifest.layers.length === 0) throw new Error(`${reference}: the image has no layers`);
  const disk: Recognised[] = [];
  const acceleration: Recognised[] = [];
  for (const [index, d] of manifest.layers.entries()) {
    const where = `${reference}: layer ${index} (${d.digest})`;
    const obd = recogniseLayer(d, where);
    if (!obd) {
      throw new AnnotationError(`${reference} is not a dadi/overlaybd image: ${where.slice(reference.length + 2)} has no ` +
        `containerd.io/snapshot/overlaybd/blob-digest annotation (media type ${d.mediaType}). ` +
        `Convert it first: dadi convert ${reference} <destination>`);
    }
    if (isTurboVersion(obd.version)) {
      throw new AnnotationError(`${where}: overlaybd version ${obd.version} (turboOCI) is not supported; convert the image to native overlaybd with dadi convert`);
    }
    (obd.accelerationLayer ? acceleration : disk).push({ d, index, obd });
  }
  if (disk.length === 0) throw new Error(`${reference}: every layer is an acceleration (trace) layer; there is no disk`);
  return { disk, acceleration };
}

export function platformOf(config: unknown, fallback: Platform): Platform {
  const c = config as { os?: unknown; architecture?: unknown; variant?: unknown };
  if (typeof c?.os !== 'string' || typeof c.architecture !== 'string') return fallback;
  return { os: c.os, architecture: c.architecture, ...(typeof c.variant === 'string' ? { variant: c.variant } : {}) };
}

export function parseConfig(bytes: Buffer, reference: string, digest: string): { rootfs?: { diff_ids?: unknown } } {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown;
    if (!json || typeof json !== 'object') throw new Error('not an object');
    return json as { rootfs?: { diff_ids?: unknown } };
  } catch (err) {
    throw new Error(`${reference}: image config ${digest} is not a JSON object: ${errorMessage(err)}`);
  }
}

/** overlaybd configs list each layer blob's digest as its diff_id (§7.9); a mismatch is only logged. */
export function checkDiffIds(config: { rootfs?: { diff_ids?: unknown } }, manifest: ImageManifest, reference: string): void {
  const ids = config.rootfs?.diff_ids;
  if (!Array.isArray(ids)) return;
  if (ids.length !== manifest.layers.length) {
    log.warn({ reference, diffIds: ids.length, layers: manifest.layers.length }, 'config diff_ids and manifest layers differ in number');
  }
}
