/** Manifest endpoints: GET/HEAD/PUT/DELETE `/v2/<name>/manifests/<tag|digest>`. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { isDigest } from '../digest.ts';
import { MediaType, isImageManifestType, isIndexType } from '../media-types.ts';
import { isTag } from '../names.ts';
import { manifestProblem, type Descriptor, type ImageIndex, type ImageManifest } from '../oci.ts';
import { HttpError, err, readBody, sendEmpty } from './http.ts';
import type { Storage } from './storage.ts';

const MAX_MANIFEST_BYTES = 4 << 20;

/** Resolves a tag or digest to a stored manifest digest linked in the repository. */
async function resolve(storage: Storage, name: string, ref: string): Promise<{ digest: string; mediaType: string }> {
  checkReference(ref);
  const digest = isDigest(ref) ? ref : await storage.getTag(name, ref);
  if (!digest) throw err.manifestUnknown(ref);
  const mediaType = await storage.linked(name, 'manifests', digest);
  if (mediaType === undefined) throw err.manifestUnknown(ref);
  return { digest, mediaType: mediaType || MediaType.ociManifest };
}

function checkReference(ref: string): void {
  if (isDigest(ref)) {
    if (!ref.startsWith('sha256:')) throw new HttpError(400, 'DIGEST_INVALID', `unsupported digest algorithm: ${ref}`);
    return;
  }
  if (!isTag(ref)) throw new HttpError(400, 'TAG_INVALID', `invalid tag or digest ${JSON.stringify(ref)}`);
}

export async function getManifest(storage: Storage, name: string, ref: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { digest, mediaType } = await resolve(storage, name, ref);
  let bytes: Buffer;
  try {
    bytes = await storage.readBlob(digest);
  } catch {
    throw err.manifestUnknown(ref);
  }
  res.writeHead(200, { 'content-type': mediaType, 'content-length': bytes.length, 'docker-content-digest': digest, etag: `"${digest}"` });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

export async function putManifest(storage: Storage, name: string, ref: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkReference(ref);
  const bytes = await readBody(req, MAX_MANIFEST_BYTES, 'manifest');
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (isDigest(ref) && ref !== digest) throw err.digestInvalid(`manifest digest ${digest} does not match the reference ${ref}`);
  let json: ImageManifest | ImageIndex;
  try {
    json = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
  } catch {
    throw new HttpError(400, 'MANIFEST_INVALID', 'manifest is not valid JSON');
  }
  const problem = manifestProblem(json);
  if (problem) throw new HttpError(400, 'MANIFEST_INVALID', `manifest invalid: ${problem}`);
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
  const mediaType = isImageManifestType(contentType) || isIndexType(contentType) ? contentType
    : typeof json.mediaType === 'string' && json.mediaType ? json.mediaType
      : 'manifests' in json ? MediaType.ociIndex : MediaType.ociManifest;
  if (!isImageManifestType(mediaType) && !isIndexType(mediaType)) {
    throw new HttpError(400, 'MANIFEST_INVALID', `unsupported manifest media type ${mediaType}`);
  }
  if (typeof json.mediaType === 'string' && json.mediaType && json.mediaType !== mediaType) {
    throw new HttpError(400, 'MANIFEST_INVALID', `Content-Type ${mediaType} disagrees with the manifest's mediaType ${json.mediaType}`);
  }
  if (isIndexType(mediaType) !== 'manifests' in json) {
    throw new HttpError(400, 'MANIFEST_INVALID', `body does not have the shape of a ${mediaType}`);
  }
  await checkReferences(storage, name, json);
  await storage.writeBlob(digest, bytes);
  await storage.link(name, 'manifests', digest, mediaType);
  if (!isDigest(ref)) await storage.setTag(name, ref, digest);
  sendEmpty(res, 201, { location: `/v2/${name}/manifests/${digest}`, 'docker-content-digest': digest });
}

/** Everything a manifest points to must already be in the repository (the distribution rule). */
async function checkReferences(storage: Storage, name: string, json: ImageManifest | ImageIndex): Promise<void> {
  const missing = async (d: Descriptor, kind: 'blobs' | 'manifests'): Promise<boolean> =>
    (await storage.linked(name, kind, d.digest)) === undefined || (await storage.blobSize(d.digest)) === undefined;
  if ('manifests' in json) {
    for (const d of json.manifests) {
      if (await missing(d, 'manifests')) {
        throw new HttpError(400, 'MANIFEST_BLOB_UNKNOWN', 'index refers to a manifest unknown to this repository', {}, { digest: d.digest });
      }
    }
    return;
  }
  for (const d of [json.config, ...json.layers]) {
    if (d.urls && d.urls.length > 0) continue; // foreign layer, fetched from its URLs
    if (await missing(d, 'blobs')) {
      throw new HttpError(400, 'MANIFEST_BLOB_UNKNOWN', 'blob unknown to registry', {}, { digest: d.digest });
    }
    const size = await storage.blobSize(d.digest);
    if (size !== d.size) {
      throw new HttpError(400, 'SIZE_INVALID', `descriptor size ${d.size} differs from the stored blob's ${size}`, {}, { digest: d.digest });
    }
  }
}

export async function deleteManifest(storage: Storage, name: string, ref: string, res: ServerResponse): Promise<void> {
  checkReference(ref);
  if (!isDigest(ref)) {
    if (!(await storage.deleteTag(name, ref))) throw err.manifestUnknown(ref);
    sendEmpty(res, 202);
    return;
  }
  if (!(await storage.unlink(name, 'manifests', ref))) throw err.manifestUnknown(ref);
  for (const tag of (await storage.tags(name)) ?? []) {
    if ((await storage.getTag(name, tag)) === ref) await storage.deleteTag(name, tag);
  }
  sendEmpty(res, 202);
}
