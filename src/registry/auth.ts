/**
 * Registry authentication: answers a 401's WWW-Authenticate challenge. A Bearer challenge means
 * "get a token from realm?service=&scope=" (with Basic credentials if we have any); tokens are
 * cached per registry and scope set until they expire (expires_in, default 60 s) and dropped when
 * the registry rejects them. A Basic challenge means sending the credentials on every request.
 */
import { RegistryError } from './errors.ts';
import type { Credentials } from './credentials.ts';
import { header, readText, type Transport } from './transport.ts';

export interface Challenge { scheme: string; params: Record<string, string> }

/** Parses `Bearer realm="…",service="…",scope="a:b:pull,push", Basic realm="…"`. */
export function parseChallenges(value: string): Challenge[] {
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const skip = (chars: string): void => {
    while (i < value.length && chars.includes(value[i]!)) i++;
  };
  while (i < value.length) {
    skip(' \t,');
    const start = i;
    while (i < value.length && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(value[i]!)) i++;
    if (i === start) break; // not a token: stop rather than guess
    const word = value.slice(start, i);
    skip(' \t');
    if (value[i] !== '=') {
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    i++;
    skip(' \t');
    let v = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length && value[i] !== '"') {
        if (value[i] === '\\' && i + 1 < value.length) i++;
        v += value[i++];
      }
      i++;
    } else {
      const vs = i;
      while (i < value.length && value[i] !== ',' && value[i] !== ' ') i++;
      v = value.slice(vs, i);
    }
    if (current) current.params[word.toLowerCase()] = v;
  }
  return out;
}

export type CredentialSource = (registry: string, repository?: string) => Promise<Credentials | undefined>;

interface CachedToken { token: string; expiresAt: number }

interface RegistryAuthState {
  basic?: string;
  bearer?: { realm: string; service?: string };
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

export class Authenticator {
  private readonly state = new Map<string, RegistryAuthState>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<void>>();
  /** Token fetches made, for tests and stats. */
  tokenFetches = 0;

  constructor(private readonly transport: Transport, private readonly credentials: CredentialSource,
    private readonly now: () => number = Date.now) {}

  /** The Authorization header to send, if this registry is known to need one and it is at hand. */
  authorization(registry: string, scopes: string[]): string | undefined {
    const st = this.state.get(registry);
    if (!st) return undefined;
    if (st.bearer) {
      const t = this.tokens.get(tokenKey(registry, st.bearer, scopes));
      if (t && t.expiresAt > this.now()) return `Bearer ${t.token}`;
      return undefined;
    }
    return st.basic;
  }

  /**
   * Fetches a token ahead of the request when the registry is known to use tokens and none is
   * cached for these scopes (saves the 401 round trip after expiry).
   */
  async prepare(registry: string, repository: string | undefined, scopes: string[]): Promise<void> {
    const bearer = this.state.get(registry)?.bearer;
    if (!bearer) return;
    const key = tokenKey(registry, bearer, scopes);
    const t = this.tokens.get(key);
    if (t && t.expiresAt > this.now()) return;
    await this.fetchTokenOnce(key, registry, repository, bearer, scopes);
  }

  /**
   * Reacts to a 401. Returns true when a new attempt may succeed (fresh token or credentials);
   * false when there is nothing new to try, and the caller reports the 401.
   */
  async challenge(registry: string, repository: string | undefined, scopes: string[], wwwAuthenticate: string | undefined,
    rejected: string | undefined): Promise<boolean> {
    const challenges = parseChallenges(wwwAuthenticate ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer?.params.realm) {
      const realm = { realm: bearer.params.realm, ...(bearer.params.service ? { service: bearer.params.service } : {}) };
      const all = mergeScopes(scopes, bearer.params.scope);
      const st = this.state.get(registry) ?? {};
      st.bearer = realm;
      this.state.set(registry, st);
      const key = tokenKey(registry, realm, scopes);
      const cached = this.tokens.get(key);
      if (cached && rejected !== `Bearer ${cached.token}` && cached.expiresAt > this.now()) return true;
      this.tokens.delete(key);
      await this.fetchTokenOnce(key, registry, repository, realm, all);
      return true;
    }
    if (basic) {
      const creds = await this.credentials(registry, repository);
      if (!creds) return false;
      const value = basicHeader(creds);
      if (value === rejected) return false;
      this.state.set(registry, { basic: value });
      return true;
    }
    return false;
  }

  private fetchTokenOnce(key: string, registry: string, repository: string | undefined,
    realm: { realm: string; service?: string }, scopes: string[]): Promise<void> {
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetchToken(key, registry, repository, realm, scopes).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetchToken(key: string, registry: string, repository: string | undefined,
    realm: { realm: string; service?: string }, scopes: string[]): Promise<void> {
    const url = new URL(realm.realm);
    if (realm.service) url.searchParams.set('service', realm.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.credentials(registry, repository);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds) headers.authorization = basicHeader(creds);
    this.tokenFetches++;
    const body = await this.transport.retry(async () => {
      const res = await this.transport.send({ method: 'GET', url: url.toString(), headers, deadlineMs: this.transport.timeoutMs });
      if (res.status !== 200) throw await this.transport.failure(res, creds ? 'token request refused (check the credentials)' : 'token request refused (no credentials configured)');
      return readText(res, 1 << 20);
    });
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      json = JSON.parse(body) as typeof json;
    } catch {
      throw new RegistryError('GET', url.toString(), 200, [], 'token response is not JSON');
    }
    const token = typeof json.token === 'string' && json.token ? json.token
      : typeof json.access_token === 'string' && json.access_token ? json.access_token : undefined;
    if (!token) throw new RegistryError('GET', url.toString(), 200, [], 'token response has neither "token" nor "access_token"');
    const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
    const issued = typeof json.issued_at === 'string' ? Date.parse(json.issued_at) : NaN;
    // Trust the issue time only if the clocks roughly agree; otherwise count from now.
    const start = !Number.isNaN(issued) && Math.abs(issued - this.now()) < 60_000 ? issued : this.now();
    // Renew a little early (a tenth of the lifetime, at most 5 s) so a token does not lapse in flight.
    const margin = Math.min(lifetime * 100, 5000);
    this.tokens.set(key, { token, expiresAt: start + lifetime * 1000 - margin });
  }
}

function tokenKey(registry: string, realm: { realm: string; service?: string }, scopes: string[]): string {
  return `${registry}|${realm.realm}|${realm.service ?? ''}|${[...scopes].sort().join(' ')}`;
}

function mergeScopes(ours: string[], fromChallenge: string | undefined): string[] {
  const all = [...ours];
  for (const s of (fromChallenge ?? '').split(' ')) if (s && !all.includes(s)) all.push(s);
  return all;
}

/** The scope a request to `repository` needs. */
export function repositoryScope(repository: string, push: boolean): string {
  return `repository:${repository}:${push ? 'pull,push' : 'pull'}`;
}

export { header };
