/**
 * Optional access control for the embedded registry, enough to exercise real clients' auth
 * flows: `basic` checks one user:password on every request; `token` runs a built-in token
 * endpoint (GET /token, Basic credentials) issuing HMAC-signed tokens with an expiry and the
 * scopes asked for, and answers unauthenticated requests with a Bearer challenge.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isRepositoryName } from '../names.ts';
import { HttpError, sendJson } from './http.ts';

export type ServerAuthConfig =
  | { kind: 'basic'; username: string; password: string }
  | {
    kind: 'token'; username: string; password: string;
    /** How long tokens really stay valid (default 300 s). */
    tokenLifetimeSeconds?: number;
    /** The expires_in told to clients (default: the real lifetime); larger lets tests see a 401 renewal. */
    advertisedLifetimeSeconds?: number;
  };

/** Parses the CLI form `basic:USER:PASS` or `token:USER:PASS`. */
export function parseAuthOption(s: string): ServerAuthConfig {
  const m = /^(basic|token):([^:]+):(.*)$/.exec(s);
  if (!m || m[3] === '') throw new Error(`invalid --auth "${s}": expected basic:USER:PASS or token:USER:PASS`);
  return { kind: m[1] as 'basic' | 'token', username: m[2]!, password: m[3]! };
}

export const TOKEN_SERVICE = 'dadi-registry';
const BASIC_REALM = 'dadi-registry';

export interface Access { repository: string; actions: string[] }

export class ServerAuth {
  private readonly secret = randomBytes(32);
  /** Tokens issued, for tests. */
  issued = 0;

  constructor(readonly config: ServerAuthConfig) {}

  /** Serves GET /token (token mode only). */
  handleToken(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (this.config.kind !== 'token') throw new HttpError(404, 'NOT_FOUND', 'no token endpoint (token auth is off)');
    if (!this.checkBasic(req.headers.authorization)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'invalid username or password',
        { 'www-authenticate': `Basic realm="${BASIC_REALM}"` });
    }
    const access: string[] = [];
    for (const scope of url.searchParams.getAll('scope')) {
      for (const one of scope.split(' ')) {
        const m = /^repository:([^:]+):([a-z,*]+)$/.exec(one);
        if (m && isRepositoryName(m[1]!)) access.push(`${m[1]}:${m[2]}`);
      }
    }
    const lifetime = this.config.tokenLifetimeSeconds ?? 300;
    const payload = Buffer.from(JSON.stringify({ sub: this.config.username, exp: Date.now() + lifetime * 1000, access })).toString('base64url');
    const token = `${payload}.${this.sign(payload)}`;
    this.issued++;
    sendJson(res, 200, { token, access_token: token, expires_in: this.config.advertisedLifetimeSeconds ?? lifetime,
      issued_at: new Date().toISOString() });
  }

  /**
   * Throws a 401 with the right challenge unless the request may do `action` on `repository`
   * (no repository: any valid credential will do, as for `/v2/`).
   */
  check(req: IncomingMessage, repository: string | undefined, action: 'pull' | 'push'): void {
    const authz = req.headers.authorization;
    if (this.config.kind === 'basic') {
      if (this.checkBasic(authz)) return;
      throw new HttpError(401, 'UNAUTHORIZED', authz ? 'invalid username or password' : 'authentication required',
        { 'www-authenticate': `Basic realm="${BASIC_REALM}"` });
    }
    const token = authz?.startsWith('Bearer ') ? authz.slice(7).trim() : undefined;
    const granted = token ? this.verify(token) : undefined;
    if (granted && (repository === undefined || allows(granted, repository, action))) return;
    const scheme = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    const realm = `${scheme}://${req.headers.host ?? '127.0.0.1'}/token`;
    const scope = repository ? `,scope="repository:${repository}:${action === 'push' ? 'pull,push' : 'pull'}"` : '';
    throw new HttpError(401, 'UNAUTHORIZED', token ? (granted ? 'token does not grant this access' : 'token invalid or expired') : 'authentication required',
      { 'www-authenticate': `Bearer realm="${realm}",service="${TOKEN_SERVICE}"${scope}` });
  }

  /** Whether the request's credentials allow `action` on `repository` (no challenge). */
  allowed(req: IncomingMessage, repository: string, action: 'pull' | 'push'): boolean {
    try {
      this.check(req, repository, action);
      return true;
    } catch {
      return false;
    }
  }

  private checkBasic(authz: string | undefined): boolean {
    if (!authz?.startsWith('Basic ')) return false;
    const text = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
    return sameSecret(text, `${this.config.username}:${this.config.password}`);
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }

  private verify(token: string): string[] | undefined {
    const dot = token.indexOf('.');
    if (dot < 0) return undefined;
    const payload = token.slice(0, dot);
    if (!sameSecret(token.slice(dot + 1), this.sign(payload))) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown; access?: unknown };
      if (typeof claims.exp !== 'number' || claims.exp <= Date.now() || !Array.isArray(claims.access)) return undefined;
      return claims.access.filter((a): a is string => typeof a === 'string');
    } catch {
      return undefined;
    }
  }
}

function allows(granted: string[], repository: string, action: string): boolean {
  return granted.some((g) => {
    const colon = g.lastIndexOf(':');
    if (g.slice(0, colon) !== repository) return false;
    const actions = g.slice(colon + 1).split(',');
    return actions.includes(action) || actions.includes('*');
  });
}

/** Constant-time comparison of two secrets of any length. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
