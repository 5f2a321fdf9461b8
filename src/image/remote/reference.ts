/**
 * Telling registry images from local files among serve/mount arguments.
 */
import { access } from 'node:fs/promises';
import { InvalidReferenceError } from '../../registry/errors.ts';
import { parseReference } from '../../registry/reference.ts';
import { isOciLayoutRef } from '../oci-layout.ts';

/**
 * Whether a serve/mount argument names an image to fetch rather than a local file: an existing
 * path wins; `oci:` names a layout; otherwise a reference that names its registry (`host.domain/…`,
 * `host:port/…`, `localhost/…`) or a tag or digest (`repo:tag`, `repo@sha256:…`). A missing
 * `dir/base.lsmt` is a missing file, not a Docker Hub repository.
 */
export async function isImageReference(arg: string): Promise<boolean> {
  if (await access(arg).then(() => true, () => false)) return false;
  if (isOciLayoutRef(arg)) return true;
  if (arg.endsWith('.json') || arg.includes(',') || arg.startsWith('/') || arg.startsWith('.')) return false;
  const slash = arg.indexOf('/');
  const first = slash >= 0 ? arg.slice(0, slash) : '';
  const namesRegistry = first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
  const last = arg.slice(arg.lastIndexOf('/') + 1);
  const hasTagOrDigest = arg.includes('@') || last.includes(':');
  if (!namesRegistry && !hasTagOrDigest) return false;
  if (!hasTagOrDigest && LAYER_FILE.test(last)) return false;
  try {
    parseReference(arg);
    return true;
  } catch (err) {
    if (err instanceof InvalidReferenceError) return false;
    throw err;
  }
}

/** Names that are layer files, not repositories, when no tag or digest says otherwise. */
const LAYER_FILE = /\.(lsmt|zlsmt|zfile|tar|img|raw|data|index|sealed)$/i;

/**
 * Whether the arguments name one registry image (or OCI layout) rather than local files; a
 * reference mixed with other arguments is refused.
 */
export async function pickRemoteImage(args: readonly string[]): Promise<string | undefined> {
  const refs: string[] = [];
  for (const a of args) if (await isImageReference(a)) refs.push(a);
  if (refs.length === 0) return undefined;
  if (args.length > 1) {
    throw new Error(`${refs[0]} is an image reference (there is no such local file); an image is served alone, without other layer arguments`);
  }
  return refs[0];
}
