/** The registry client's public surface (the embedded server lives in ./server/server.ts). */
export { RegistryClient, hostPlatform, type RegistryClientOptions, type RepositoryRef } from './client.ts';
export { parseReference, formatReference, referenceTarget, registryBaseUrl, type ImageReference } from './reference.ts';
export { RegistryError, InvalidReferenceError } from './errors.ts';
export { MediaType, MANIFEST_ACCEPT, isIndexType, isImageManifestType } from './media-types.ts';
export { sha256Digest, isDigest, checkDigest } from './digest.ts';
export { selectPlatform, parsePlatform, formatPlatform, type FetchedManifest, type ResolvedImage, type ManifestHead } from './manifests.ts';
export type { UploadOptions, UploadResult } from './blobs.ts';
export type { ChunkSink, SourceUploadOptions } from './blob-transfer.ts';
export type { Descriptor, ImageManifest, ImageIndex, Platform } from './oci.ts';
export type { Credentials } from './credentials.ts';
export { registryMetrics, type FetchStats } from './metrics.ts';
