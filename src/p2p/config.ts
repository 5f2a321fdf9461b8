/**
 * P2P settings, the same for `dadi snapshotter` (the `[p2p]` table of its config) and `dadi serve`
 * (`--p2p-config FILE`, a TOML file with the same `[p2p]` table):
 *
 *   [p2p]
 *   self = "10.0.0.7:7070"          # this host as the peer list names it; the agent listens there
 *   listen = "0.0.0.0:7070"         # optional bind address (default: self)
 *   root = "10.0.0.2:7070"          # the root (`dadi p2p root`) in front of the registry
 *   peers = ["10.0.0.7:7070", …]    # the member list, or:
 *   peersFile = "/etc/dadi/peers"   #   one host:port per line
 *   fanout = 2                      # k of the k-ary tree per blob
 *   tokenFile = "/etc/dadi/p2p.token"  # shared secret sent as a Bearer token (or token = "…")
 *   timeoutMs = 5000                # a peer slower than this is skipped for the next ancestor
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'smol-toml';
import { checkFanout, parseMembers } from './topology.ts';

export interface P2PConfig {
  self: string;
  listen: string;
  root: string;
  members: string[];
  fanout: number;
  token: string;
  timeoutMs: number;
}

const KEYS = ['self', 'listen', 'root', 'peers', 'peersFile', 'fanout', 'token', 'tokenFile', 'timeoutMs'];
const HOST_PORT = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;

export class P2PConfigError extends Error {
  override readonly name = 'P2PConfigError';
}

/** The `[p2p]` table of `file` as a config (peer and token files are read here). */
export async function p2pConfigFromTable(t: Record<string, unknown>, file: string): Promise<P2PConfig> {
  const bad = (key: string, why: string): never => { throw new P2PConfigError(`${file}: p2p.${key} ${why}`); };
  for (const k of Object.keys(t)) if (!KEYS.includes(k)) bad(k, `is not a known key (known: ${KEYS.join(', ')})`);
  const str = (key: string): string | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !v) return bad(key, 'must be a non-empty string');
    return v;
  };
  const self = str('self') ?? bad('self', 'is required: this host as the peer list names it (host:port)');
  const root = str('root') ?? bad('root', 'is required: the root server (host:port)');
  for (const [k, v] of [['self', self], ['root', root]] as const) if (!HOST_PORT.test(v)) bad(k, `${JSON.stringify(v)} must be host:port`);
  const listen = str('listen') ?? self;
  let members: string[];
  if (t.peers !== undefined) {
    if (!Array.isArray(t.peers) || !t.peers.every((p) => typeof p === 'string')) bad('peers', 'must be an array of "host:port" strings');
    members = parseMembers((t.peers as string[]).join('\n'), `${file}: p2p.peers`);
  } else {
    const pf = str('peersFile') ?? bad('peers', 'or p2p.peersFile is required: the member list');
    members = parseMembers(await readText(pf, `${file}: p2p.peersFile`), pf);
  }
  if (!members.includes(self)) bad('self', `${self} is not in the peer list`);
  const fanout = t.fanout ?? 2;
  if (typeof fanout !== 'number') bad('fanout', 'must be a number');
  try { checkFanout(fanout as number); } catch (err) { bad('fanout', (err as Error).message); }
  const tokenFile = str('tokenFile');
  const token = tokenFile ? (await readText(tokenFile, `${file}: p2p.tokenFile`)).trim() : str('token') ?? '';
  const timeoutMs = t.timeoutMs ?? 5000;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) bad('timeoutMs', 'must be a number above zero');
  return { self, listen, root, members, fanout: fanout as number, token, timeoutMs: timeoutMs as number };
}

/** A TOML file with a `[p2p]` table (`--p2p-config`). */
export async function loadP2PConfig(file: string): Promise<P2PConfig> {
  let doc: Record<string, unknown>;
  try {
    doc = parse(await readText(file, 'p2p config')) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof P2PConfigError) throw err;
    throw new P2PConfigError(`${file}: not valid TOML: ${(err as Error).message}`);
  }
  const t = doc.p2p;
  if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new P2PConfigError(`${file}: needs a [p2p] table`);
  return p2pConfigFromTable(t as Record<string, unknown>, file);
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new P2PConfigError(`${what}: cannot read ${path}: ${(err as Error).message}`);
  }
}
