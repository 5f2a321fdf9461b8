/**
 * The P2P tree of one blob, computed the same way on every host from the member list alone (no
 * coordination): members are ordered by rendezvous (highest-random-weight) hashing of
 * (blob, member), and that order is laid out as a k-ary heap: position 0 fetches from the root
 * (the data center's caching server in front of the registry), position i from position
 * floor((i-1)/k). A different blob gives a different order, so every host is near the top of
 * some trees and a leaf of most, and the upload work spreads over all hosts.
 *
 * Properties (test/p2p/topology.test.ts): every member has exactly one parent; parents sit at
 * earlier positions, so there are no cycles; the depth is about log_k(n); a member that is down
 * is skipped, its children fetching from its parent (one level up), and so on up to the root.
 *
 * The member list is static here (a list or a file of peers, the same on every host). In a
 * larger deployment it would come from a service (the orchestrator's node list, a DNS SRV record
 * or a key-value store watched by every agent); rendezvous hashing keeps the order of the other
 * members when one joins or leaves, so a change moves only the positions after it.
 */
import { createHash } from 'node:crypto';

/** The root, which is not a member: a parent of `ROOT` means "fetch from the root server". */
export const ROOT = '@root';

/** A 52-bit score of (blob, member): rendezvous hashing orders members by it, highest first. */
export function score(blob: string, member: string): number {
  const h = createHash('sha256').update(blob).update('\0').update(member).digest();
  return h.readUIntBE(0, 6) * 16 + (h[6]! >> 4);
}

/** The members in tree order for `blob`: position 0 first. Duplicates are dropped. */
export function treeOrder(blob: string, members: readonly string[]): string[] {
  const unique = [...new Set(members)];
  const scored = unique.map((m) => ({ m, s: score(blob, m) }));
  scored.sort((a, b) => b.s - a.s || (a.m < b.m ? -1 : a.m > b.m ? 1 : 0));
  return scored.map((x) => x.m);
}

export function checkFanout(fanout: number): void {
  if (!Number.isInteger(fanout) || fanout < 1) throw new RangeError(`p2p fanout ${fanout}: expected an integer of at least 1`);
}

/** The heap position of the parent of position `i` (-1: the root). */
export function parentPosition(i: number, fanout: number): number {
  return i === 0 ? -1 : Math.floor((i - 1) / fanout);
}

/** Hops from position `i` to the root (position 0: 1). */
export function depthOf(i: number, fanout: number): number {
  let d = 1;
  for (let p = i; p > 0; p = parentPosition(p, fanout)) d++;
  return d;
}

/** A blob's tree over the members, with position lookups. */
export class BlobTree {
  readonly order: readonly string[];
  private readonly pos: Map<string, number>;

  constructor(readonly blob: string, members: readonly string[], readonly fanout: number) {
    checkFanout(fanout);
    this.order = treeOrder(blob, members);
    this.pos = new Map(this.order.map((m, i) => [m, i]));
  }

  position(member: string): number {
    const i = this.pos.get(member);
    if (i === undefined) throw new Error(`p2p: ${member} is not a member of the peer list`);
    return i;
  }

  /** The parent, grandparent, … of `member`, up to and including ROOT. */
  ancestors(member: string): string[] {
    const out: string[] = [];
    for (let p = parentPosition(this.position(member), this.fanout); p >= 0; p = parentPosition(p, this.fanout)) out.push(this.order[p]!);
    out.push(ROOT);
    return out;
  }

  /** Where `member` fetches from: the nearest ancestor that is not down, else ROOT. */
  parentOf(member: string, isDown: (m: string) => boolean = () => false): string {
    return this.ancestors(member).find((a) => a === ROOT || !isDown(a))!;
  }

  /** The members that fetch from `member` while nothing is down. */
  children(member: string): string[] {
    const i = this.position(member);
    const out: string[] = [];
    for (let c = i * this.fanout + 1; c <= i * this.fanout + this.fanout && c < this.order.length; c++) out.push(this.order[c]!);
    return out;
  }

  /** Hops from `member` to the root. */
  depth(member: string): number {
    return depthOf(this.position(member), this.fanout);
  }

  /** The largest depth: the levels of a complete k-ary heap of n nodes. */
  get height(): number {
    return this.order.length === 0 ? 0 : depthOf(this.order.length - 1, this.fanout);
  }
}

/** Parses a peer list: one `host:port` per line or comma-separated; `#` comments and blanks ignored. */
export function parseMembers(text: string, origin = 'peer list'): string[] {
  const out: string[] = [];
  for (const [n, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    for (const item of line.split(/[\s,]+/).filter(Boolean)) {
      if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(item)) throw new Error(`${origin} line ${n + 1}: ${JSON.stringify(item)} is not host:port`);
      out.push(item);
    }
  }
  return [...new Set(out)];
}
