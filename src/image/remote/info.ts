/**
 * What attaching a remote image learned and what it cost: the manifest, config and platform,
 * each layer's blob, wrappers, identity and attach cost. `dadi image info` prints it.
 */
import type { Platform } from '../../registry/oci.ts';
import type { ChainLayer } from '../chain/layer.ts';
import type { Recognised } from './manifest.ts';

export interface RemoteLayerInfo {
  /** Position in the manifest's layers. */
  index: number;
  mediaType: string;
  /** The manifest descriptor's digest and size. */
  digest: string;
  size: number;
  /** The overlaybd blob actually read (annotations). */
  blobDigest: string;
  blobSize: number;
  version: string;
  fsType?: string;
  /** Detected wrappers, outermost first: `tar`, `zfile(lz4, 4096, crc)`. */
  wrappers: string[];
  uuid: string;
  parentUuid: string;
  virtualSize: number;
  segments: number;
  /** Fetched bytes are checked against the layer's chunk digest table. */
  verified: boolean;
  attach: { bytes: number; requests: number; seconds: number };
}

export interface RemoteImageInfo {
  reference: string;
  /** `registry` or `oci-layout`. */
  source: 'registry' | 'oci-layout';
  manifestDigest: string;
  manifestMediaType: string;
  indexDigest?: string;
  indexMediaType?: string;
  configDigest: string;
  configMediaType: string;
  platform: Platform;
  diskSize: number;
  writable: boolean;
  layers: RemoteLayerInfo[];
  /** Trace layers the disk leaves out. */
  accelerationLayers: Array<{ index: number; digest: string; size: number }>;
  /** Sum of the layer blob sizes: what a full pull would transfer. */
  imageBytes: number;
  attach: { seconds: number; bytes: number; requests: number; metadataBytes: number; metadataRequests: number };
  cacheDir?: string;
  refillUnit?: number;
}

function describeWrappers(layer: ChainLayer): string[] {
  return layer.wrappers.map((w) => (w.kind === 'tar' ? 'tar' : `zfile(${w.algo}, ${w.blockSize}${w.checksum ? ', crc' : ''})`));
}

export function layerInfo(r: Recognised, layer: ChainLayer, attach: RemoteLayerInfo['attach']): RemoteLayerInfo {
  return {
    index: r.index, mediaType: r.d.mediaType, digest: r.d.digest, size: r.d.size,
    blobDigest: r.obd.blobDigest, blobSize: r.obd.blobSize, version: r.obd.version,
    ...(r.obd.fsType !== undefined ? { fsType: r.obd.fsType } : {}),
    wrappers: describeWrappers(layer), uuid: layer.uuid, parentUuid: layer.parentUuid,
    virtualSize: layer.virtualSize, segments: layer.index.count, verified: layer.verify !== undefined, attach,
  };
}
