/**
 * Registry credentials from a Docker-style config (`$DOCKER_CONFIG/config.json`, else
 * `~/.docker/config.json`): the `auths` map, keyed by host or host/path prefix, whose values hold
 * `auth` (base64 "user:pass") or `username`/`password`. The file is read each time credentials
 * are needed, so a refreshed login takes effect without a restart (as overlaybd does).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_HUB } from './reference.ts';

export interface Credentials { username: string; password: string }

/** Where the docker config lives: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG && env.DOCKER_CONFIG !== '' ? env.DOCKER_CONFIG : join(homedir(), '.docker');
  return join(dir, 'config.json');
}

/** Normalises an `auths` key: no scheme, no trailing slash, no `/v1` or `/v2` API suffix. */
export function normaliseAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  k = k.replace(/\/v[12]$/, '');
  return k.toLowerCase() === 'index.docker.io' || k.toLowerCase() === 'registry-1.docker.io' ? DOCKER_HUB : k;
}

/** Candidate keys for a repository, shortest first: `host`, `host/ns`, `host/ns/repo`. */
export function candidateKeys(registry: string, repository?: string): string[] {
  const host = normaliseAuthKey(registry);
  const keys = [host];
  if (repository) {
    const parts = repository.split('/');
    for (let i = 1; i <= parts.length; i++) keys.push(`${host}/${parts.slice(0, i).join('/')}`);
  }
  return keys;
}

interface AuthEntry { auth?: unknown; username?: unknown; password?: unknown }

/**
 * Picks the credentials for `registry/repository` from a parsed config: the first `auths` entry
 * (in file order) whose normalised key equals one of the candidate prefixes.
 */
export function credentialsFromConfig(config: unknown, registry: string, repository?: string): Credentials | undefined {
  const auths = (config as { auths?: Record<string, AuthEntry> } | null)?.auths;
  if (!auths || typeof auths !== 'object') return undefined;
  const wanted = new Set(candidateKeys(registry, repository));
  for (const [key, entry] of Object.entries(auths)) {
    if (!wanted.has(normaliseAuthKey(key)) || !entry || typeof entry !== 'object') continue;
    const creds = decodeEntry(entry);
    if (creds) return creds;
  }
  return undefined;
}

function decodeEntry(entry: AuthEntry): Credentials | undefined {
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** Reads the docker config and picks the entry for the repository; a missing file means none. */
export async function loadDockerCredentials(registry: string, repository?: string,
  path: string = dockerConfigPath()): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  return credentialsFromConfig(config, registry, repository);
}
