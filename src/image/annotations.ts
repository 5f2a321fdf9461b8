/**
 * The overlaybd layer annotations (formats.md §7.3, §7.9): the keys a dadi/overlaybd manifest puts
 * on each layer descriptor, which containerd copies into snapshot labels, and the recogniser that
 * turns a descriptor into what attaching needs. Writers (dadi convert) use the same constants.
 */
import { formatTableRef, parseTableRef, type DigestTableRef } from '../format/tar/digest-table.ts';
import { isDigest } from '../registry/digest.ts';
import type { Descriptor } from '../registry/oci.ts';

const PREFIX = 'containerd.io/snapshot/overlaybd';

export const Annotation = {
  blobDigest: `${PREFIX}/blob-digest`,
  blobSize: `${PREFIX}/blob-size`,
  version: `${PREFIX}/version`,
  fsType: `${PREFIX}/blob-fs-type`,
  accelerationLayer: `${PREFIX}/acceleration-layer`,
  turboTargetDigest: `${PREFIX}/turbo-oci/target-digest`,
  turboTargetMediaType: `${PREFIX}/turbo-oci/target-media-type`,
  fastociTargetDigest: `${PREFIX}/fastoci/target-digest`,
  /**
   * dadi's chunk digest table of the blob (format/tar/digest-table.ts):
   * `sha256:<hex of the table member>;offset=<n>;length=<n>`. Under containerd.io/snapshot/ so
   * containerd passes it to the snapshotter as a label; other tools ignore it.
   */
  verifyTable: 'containerd.io/snapshot/dadi/verify-table',
} as const;

/** The version string of native overlaybd layers (what dadi writes). */
export const NATIVE_VERSION = '0.1.0';
export const TURBO_OCI_VERSION = '0.1.0-turbo.ociv1';
export const FASTOCI_VERSION = '0.1.0-fastoci';

/** `artifactType` the reference convertor sets with `--referrer` on native images. */
export const OVERLAYBD_NATIVE_ARTIFACT = 'application/vnd.containerd.overlaybd.native.v1+json';

export interface OverlaybdLayer {
  /** The overlaybd blob to read (the blob-digest annotation). */
  blobDigest: string;
  blobSize: number;
  version: string;
  /** A trace layer (`acceleration-layer: yes`): recorded reads, not part of the disk. */
  accelerationLayer: boolean;
  /** `blob-fs-type` when present: `fstype[;mountopts[;mkfsopts]]`. */
  fsType?: string;
  /** turboOCI / fastoci layers point at an original OCI blob; dadi does not attach those. */
  turboTargetDigest?: string;
  /** Where the blob's chunk digest table is and its digest: reads are then verified chunk by chunk. */
  verifyTable?: DigestTableRef;
}

/** The verify-table annotation (or label) of a blob of `blobSize` bytes; malformed values throw, naming them. */
export function verifyTableOf(a: Record<string, string>, blobSize: number, where: string): DigestTableRef | undefined {
  const text = a[Annotation.verifyTable];
  if (text === undefined) return undefined;
  const ref = parseTableRef(text);
  if (!ref) throw new AnnotationError(`${where}: ${Annotation.verifyTable} is ${JSON.stringify(text)}, not "sha256:<hex>;offset=<n>;length=<n>"`);
  if (ref.offset + ref.length !== blobSize) {
    throw new AnnotationError(`${where}: ${Annotation.verifyTable} places the table at ${ref.offset}+${ref.length}, but the blob is ${blobSize} bytes`);
  }
  return ref;
}

/** Thrown for a descriptor that claims to be overlaybd but whose annotations are unusable. */
export class AnnotationError extends Error {
  override readonly name = 'AnnotationError';
}

/**
 * The overlaybd view of a layer descriptor, or undefined when it carries no blob-digest (an
 * ordinary OCI layer). Malformed overlaybd annotations throw, naming the key and value.
 */
export function recogniseLayer(d: Descriptor, where = `layer ${d.digest}`): OverlaybdLayer | undefined {
  const a = d.annotations ?? {};
  const digest = a[Annotation.blobDigest];
  if (digest === undefined) return undefined;
  if (!isDigest(digest)) throw new AnnotationError(`${where}: ${Annotation.blobDigest} is ${JSON.stringify(digest)}, not a digest`);
  const sizeText = a[Annotation.blobSize];
  let blobSize = d.size;
  if (sizeText !== undefined) {
    if (!/^\d+$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
      throw new AnnotationError(`${where}: ${Annotation.blobSize} is ${JSON.stringify(sizeText)}, not a decimal size`);
    }
    blobSize = Number(sizeText);
  } else if (digest !== d.digest) {
    throw new AnnotationError(`${where}: ${Annotation.blobDigest} names another blob (${digest}) but ${Annotation.blobSize} is missing`);
  }
  const version = a[Annotation.version] ?? NATIVE_VERSION;
  const target = a[Annotation.turboTargetDigest] ?? a[Annotation.fastociTargetDigest];
  const fsType = a[Annotation.fsType];
  const verifyTable = verifyTableOf(a, blobSize, where);
  return {
    blobDigest: digest,
    blobSize,
    version,
    accelerationLayer: a[Annotation.accelerationLayer] === 'yes',
    ...(fsType !== undefined ? { fsType } : {}),
    ...(target !== undefined ? { turboTargetDigest: target } : {}),
    ...(verifyTable ? { verifyTable } : {}),
  };
}

/** Whether the version names a turboOCI/fastoci layer (a meta file over an original OCI blob). */
export function isTurboVersion(version: string): boolean {
  return version.includes('turbo') || version.includes('fastoci');
}

/** The annotations a native overlaybd layer descriptor carries (what `dadi convert` writes). */
export function overlaybdLayerAnnotations(blobDigest: string, blobSize: number,
  extra: { accelerationLayer?: boolean; fsType?: string; verifyTable?: DigestTableRef } = {}): Record<string, string> {
  return {
    [Annotation.version]: NATIVE_VERSION,
    [Annotation.blobDigest]: blobDigest,
    [Annotation.blobSize]: String(blobSize),
    ...(extra.fsType !== undefined ? { [Annotation.fsType]: extra.fsType } : {}),
    ...(extra.accelerationLayer ? { [Annotation.accelerationLayer]: 'yes' } : {}),
    ...(extra.verifyTable ? { [Annotation.verifyTable]: formatTableRef(extra.verifyTable) } : {}),
  };
}
