/**
 * Image references as users write them: `[host[:port]/]repo[:tag][@digest]`, with Docker's
 * defaults (docker.io, `library/`, tag `latest`) and the rule that picks plain HTTP for loopback
 * registries or when the caller says `--insecure`.
 */
import { isDigest } from './digest.ts';
import { InvalidReferenceError } from './errors.ts';
import { isRepositoryName, isTag } from './names.ts';

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io';

export interface ImageReference {
  /** The registry as named in credentials: `docker.io`, `127.0.0.1:5000`, `ghcr.io`. */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

/** Parses a reference; fills in docker.io, `library/` and the tag `latest` as Docker does. */
export function parseReference(input: string): ImageReference {
  const original = input;
  const fail = (why: string): never => {
    throw new InvalidReferenceError(`invalid image reference "${original}": ${why}`);
  };
  let s = input.trim();
  if (s.startsWith('docker://')) s = s.slice('docker://'.length);
  if (s === '') fail('empty');

  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    digest = s.slice(at + 1);
    s = s.slice(0, at);
    if (!isDigest(digest)) fail(`"${digest}" is not a digest (expected sha256:<64 lower-case hex>)`);
  }

  let registry = DOCKER_HUB;
  let rest = s;
  const slash = s.indexOf('/');
  if (slash >= 0) {
    const first = s.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      registry = first;
      rest = s.slice(slash + 1);
      if (!isRegistryHost(registry)) fail(`"${registry}" is not a valid registry host[:port]`);
    }
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isTag(tag)) fail(`"${tag}" is not a valid tag`);
  }
  if (registry === DOCKER_HUB || registry === 'index.docker.io') {
    registry = DOCKER_HUB;
    if (!rest.includes('/')) rest = `library/${rest}`;
  }
  if (!isRepositoryName(rest)) {
    fail(`"${rest}" is not a valid repository name (lower-case letters, digits and . _ - separators, / between components)`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

function isRegistryHost(host: string): boolean {
  return /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$/.test(host);
}

/** What to ask the registry for: the digest when pinned, else the tag. */
export function referenceTarget(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function formatReference(ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Loopback registries speak plain HTTP unless told otherwise, as Docker treats them. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = hostOf(registry);
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function hostOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const colon = registry.lastIndexOf(':');
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/** The base URL (`scheme://host[:port]`) of a registry's API. */
export function registryBaseUrl(registry: string, opts: { insecure?: boolean } = {}): string {
  const endpoint = registry === DOCKER_HUB ? DOCKER_HUB_ENDPOINT : registry;
  const scheme = opts.insecure || isLoopbackRegistry(registry) ? 'http' : 'https';
  return `${scheme}://${endpoint}`;
}
