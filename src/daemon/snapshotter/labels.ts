/**
 * The snapshot labels the overlaybd snapshotter reads and writes (formats.md §7.3), and how a
 * Prepare's labels say which kind of layer it is (§7.4): a lazily pulled dadi/overlaybd layer
 * (blob labels plus an image reference), or an ordinary layer for containerd to unpack.
 */
import { Annotation, isTurboVersion } from '../../image/annotations.ts';
import { isDigest } from '../../registry/digest.ts';

export const Label = {
  /** Set by containerd's unpacker: "this Prepare is a pull of the layer with this chain ID". */
  targetRef: 'containerd.io/snapshot.ref',
  imageRef: 'containerd.io/snapshot/image-ref',
  criImageRef: 'containerd.io/snapshot/cri.image-ref',
  stargzReference: 'containerd.io/snapshot/remote/stargz.reference',
  remote: 'containerd.io/snapshot/remote',
  writable: 'containerd.io/snapshot/overlaybd.writable',
  vsize: 'containerd.io/snapshot/overlaybd/vsize',
  localCommitPath: 'containerd.io/snapshot/overlaybd.localcommitpath',
  downloadRemoteBlob: 'containerd.io/snapshot/overlaybd/download-remote-blob',
  activePath: 'containerd.io/snapshot/overlay.active.path',
  ...Annotation,
} as const;

export const REMOTE_SNAPSHOT = 'remote snapshot';

/** The image reference a pull labelled the layer with, by the labels ctr-remote, CRI and `dadi pull` set. */
export function imageRefOf(labels: Record<string, string>): string | undefined {
  return labels[Label.imageRef] || labels[Label.criImageRef] || labels[Label.stargzReference] || undefined;
}

export interface RemoteBlockLabels { targetRef: string; imageRef: string; digest: string; size: number }

export class LabelError extends Error {
  override readonly name = 'LabelError';
}

/**
 * The remote layer a pull Prepare describes, or undefined for an ordinary layer. Malformed
 * overlaybd labels and turboOCI layers are refused with the key and value named.
 */
export function remoteBlockOf(labels: Record<string, string>): RemoteBlockLabels | undefined {
  const targetRef = labels[Label.targetRef];
  const digest = labels[Label.blobDigest];
  const sizeText = labels[Label.blobSize];
  const imageRef = imageRefOf(labels);
  if (!targetRef || digest === undefined || sizeText === undefined || !imageRef) return undefined;
  if (labels[Label.downloadRemoteBlob] === 'download') return undefined;
  if (labels[Label.accelerationLayer] === 'yes') return undefined;
  if (!isDigest(digest)) throw new LabelError(`label ${Label.blobDigest} is ${JSON.stringify(digest)}, not a sha256 digest`);
  if (!/^\d+$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText)) || Number(sizeText) === 0) {
    throw new LabelError(`label ${Label.blobSize} is ${JSON.stringify(sizeText)}, not a blob size`);
  }
  const version = labels[Label.version];
  if (version && isTurboVersion(version)) {
    throw new LabelError(`layer ${digest}: overlaybd version ${version} (turboOCI) is not supported; convert the image with dadi convert`);
  }
  return { targetRef, imageRef, digest, size: Number(sizeText) };
}

/** Labels a snapshot keeps: containerd passes only these through to a backend anyway. */
export function isInheritedLabel(key: string): boolean {
  return key === Label.targetRef || key.startsWith('containerd.io/snapshot/');
}
