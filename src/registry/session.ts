/**
 * One registry connection set: the connection pools, the auth state and the fetch counters.
 * `call` is the one path every request takes (authenticate, follow redirects without the
 * registry's credentials, map failures to errors, retry transient ones). The blob and manifest
 * APIs are built on a session; RegistryClient (client.ts) bundles them.
 */
import { Authenticator, repositoryScope } from './auth.ts';
import { loadDockerCredentials, type Credentials } from './credentials.ts';
import { RegistryError, parseOciErrors } from './errors.ts';
import { FetchStats, requestsTotal } from './metrics.ts';
import { registryBaseUrl } from './reference.ts';
import { Transport, drain, header, readText, type HttpResponse, type TransportOptions } from './transport.ts';
import type { Platform } from './oci.ts';

export interface RegistryClientOptions extends TransportOptions {
  /** Plain HTTP for every registry (loopback registries use it anyway). */
  insecure?: boolean;
  /** Explicit base URLs (`https://host:port`) for registries, overriding the scheme rule (e.g. a TLS loopback registry). */
  endpoints?: Record<string, string>;
  /** Explicit credentials; they override the docker config. */
  credentials?: Credentials;
  /** Docker config file to read credentials from (default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`). */
  dockerConfig?: string;
  /** Platform picked from image indexes (default: linux and the host's architecture). */
  platform?: Platform;
}

/** A repository on a registry; an ImageReference is one. */
export interface RepositoryRef { readonly registry: string; readonly repository: string }

export interface CallSpec {
  method: string;
  registry: string;
  /** The repository the request acts on: decides the token scope and the credentials. */
  repository?: string;
  /** A path under the registry's base URL, or an absolute URL (an upload Location). */
  path: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Needs push access (uploads, manifest PUT, DELETE). */
  push?: boolean;
  /** More scopes, e.g. pull access to the source repository of a cross-repo mount. */
  extraScopes?: string[];
  /** Statuses handed to the response handler; anything else becomes an error. */
  ok: readonly number[];
  /** Follow 3xx (blob storage redirects), without sending the registry's Authorization on. */
  redirects?: boolean;
  /** false: no overall deadline (large bodies); the idle timeouts still apply. */
  deadline?: boolean;
  /** false: one attempt only (non-idempotent steps whose caller retries the whole operation). */
  retry?: boolean;
  /** Metrics label. */
  kind: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

export class RegistrySession {
  readonly transport: Transport;
  readonly auth: Authenticator;
  readonly stats = new FetchStats();
  readonly platform: Platform;
  private readonly insecure: boolean;
  private readonly endpoints: Record<string, string>;

  constructor(opts: RegistryClientOptions = {}) {
    this.transport = new Transport(opts);
    this.insecure = opts.insecure ?? false;
    this.endpoints = opts.endpoints ?? {};
    this.platform = opts.platform ?? hostPlatform();
    const explicit = opts.credentials;
    const configPath = opts.dockerConfig;
    this.auth = new Authenticator(this.transport, async (registry, repository) =>
      explicit ?? (configPath !== undefined ? loadDockerCredentials(registry, repository, configPath)
        : loadDockerCredentials(registry, repository)));
  }

  baseUrl(registry: string): string {
    return this.endpoints[registry]?.replace(/\/+$/, '') ?? registryBaseUrl(registry, { insecure: this.insecure });
  }

  url(registry: string, path: string): string {
    return /^https?:\/\//.test(path) ? path : new URL(path, this.baseUrl(registry)).toString();
  }

  /** Sends one request the registry way and hands an accepted response to `onResponse`. */
  async call<T>(spec: CallSpec, onResponse: (res: HttpResponse) => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      const scopes = spec.repository ? [repositoryScope(spec.repository, spec.push ?? false), ...(spec.extraScopes ?? [])] : [];
      let url = this.url(spec.registry, spec.path);
      const deadlineMs = spec.deadline === false ? undefined : this.transport.timeoutMs;
      const send = (target: string, authorization: string | undefined): Promise<HttpResponse> => {
        const headers: Record<string, string> = { ...spec.headers };
        if (authorization) headers.authorization = authorization;
        return this.transport.send({ method: spec.method, url: target, headers,
          ...(spec.body ? { body: spec.body } : {}), ...(deadlineMs !== undefined ? { deadlineMs } : {}) });
      };
      await this.auth.prepare(spec.registry, spec.repository, scopes);
      let authorization = this.auth.authorization(spec.registry, scopes);
      let res = await send(url, authorization);
      const challenge = header(res.headers, 'www-authenticate');
      if (res.status === 401 || (res.status === 403 && challenge)) {
        const text = await readText(res, 64 * 1024).catch(() => '');
        if (!(await this.auth.challenge(spec.registry, spec.repository, scopes, challenge, authorization))) {
          throw new RegistryError(spec.method, url, res.status, parseOciErrors(text),
            authorization ? 'credentials rejected' : `(no credentials configured for ${spec.registry})`);
        }
        authorization = this.auth.authorization(spec.registry, scopes);
        res = await send(url, authorization);
        if (res.status === 401 || res.status === 403) throw await this.transport.failure(res, 'credentials rejected');
      }
      const registryOrigin = new URL(this.baseUrl(spec.registry)).origin;
      for (let hops = 0; spec.redirects && REDIRECTS.has(res.status); hops++) {
        const location = header(res.headers, 'location');
        await drain(res);
        if (!location) throw new RegistryError(spec.method, url, res.status, [], 'redirect without a Location header');
        if (hops >= MAX_REDIRECTS) throw new RegistryError(spec.method, url, res.status, [], `more than ${MAX_REDIRECTS} redirects`);
        url = new URL(location, url).toString();
        // Blob storage (S3, a CDN) gets a pre-signed URL; the registry's token is only for the registry.
        res = await send(url, new URL(url).origin === registryOrigin ? authorization : undefined);
      }
      requestsTotal.inc({ kind: spec.kind, status: String(res.status) });
      if (!spec.ok.includes(res.status)) throw await this.transport.failure(res);
      try {
        return await onResponse(res);
      } catch (err) {
        res.body.destroy();
        throw this.transport.networkError({ method: spec.method, url }, err);
      }
    };
    // retry: false leaves TransientError visible, for a caller that retries a larger operation.
    return spec.retry === false ? attempt() : this.transport.retry(attempt);
  }

  /** Checks that the registry speaks the v2 API (and that our credentials work, if it wants some). */
  async ping(registry: string): Promise<void> {
    await this.call({ method: 'GET', registry, path: '/v2/', ok: [200], kind: 'ping' }, drain);
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

/** linux and this machine's architecture, in OCI names. */
export function hostPlatform(): Platform {
  switch (process.arch) {
    case 'x64': return { os: 'linux', architecture: 'amd64' };
    case 'arm64': return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm': return { os: 'linux', architecture: 'arm', variant: 'v7' };
    case 'ia32': return { os: 'linux', architecture: '386' };
    default: return { os: 'linux', architecture: process.arch };
  }
}
