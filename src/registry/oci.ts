/** The OCI image-spec JSON shapes the registry client reads and writes, with light validation. */
import { isDigest } from './digest.ts';

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: Platform;
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** Why `d` is not a usable descriptor, or undefined when it is. */
export function descriptorProblem(d: unknown): string | undefined {
  if (!d || typeof d !== 'object') return 'not an object';
  const x = d as Partial<Descriptor>;
  if (typeof x.mediaType !== 'string' || x.mediaType === '') return 'missing mediaType';
  if (typeof x.digest !== 'string' || !isDigest(x.digest)) return `invalid digest ${JSON.stringify(x.digest)}`;
  if (typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) return `invalid size ${JSON.stringify(x.size)}`;
  return undefined;
}

/** Why `json` is not an image manifest or index, or undefined when it is one. */
export function manifestProblem(json: unknown): string | undefined {
  if (!json || typeof json !== 'object') return 'not a JSON object';
  const m = json as { schemaVersion?: unknown; config?: unknown; layers?: unknown; manifests?: unknown };
  if (m.schemaVersion !== 2) return `schemaVersion is ${JSON.stringify(m.schemaVersion)}, expected 2`;
  if (Array.isArray(m.manifests)) {
    for (const [i, d] of m.manifests.entries()) {
      const p = descriptorProblem(d);
      if (p) return `manifests[${i}]: ${p}`;
    }
    return undefined;
  }
  const c = descriptorProblem(m.config);
  if (c) return `config: ${c}`;
  if (!Array.isArray(m.layers)) return 'layers is not an array';
  for (const [i, d] of m.layers.entries()) {
    const p = descriptorProblem(d);
    if (p) return `layers[${i}]: ${p}`;
  }
  return undefined;
}
