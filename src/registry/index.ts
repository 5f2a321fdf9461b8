/** The registry client's public surface. */
export { RegistryClient, hostPlatform, type RegistryClientOptions, type RepositoryRef } from './client.ts';
export { parseReference, formatReference, referenceTarget, registryBaseUrl, type ImageReference } from './reference.ts';
export { RegistryError, InvalidReferenceError } from './errors.ts';
export { MediaType } from './media-types.ts';
export { sha256Digest, isDigest } from './digest.ts';
export { selectPlatform, parsePlatform, formatPlatform, type FetchedManifest, type ResolvedImage } from './manifests.ts';
export type { Descriptor, ImageManifest, ImageIndex, Platform } from './oci.ts';
export { registryMetrics, type FetchStats } from './metrics.ts';
