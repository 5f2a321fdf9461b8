/**
 * Shared plumbing for the `dadi mount` CLI tests: the reference ext4 layers, the manifest's
 * merged tree, a walker that describes a mounted tree in the manifest's shape, and a runner.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { MountRecord } from '../../src/host/state.ts';
import { runDadi, vector } from '../helpers/env.ts';
import { hostNeeds } from './support.ts';

export interface ManifestNode { inode: number; mode: string; uid: number; gid: number; size?: number; sha256?: string; target?: string }
export type TreeSnapshot = Record<string, ManifestNode>;

export const cliNeeds = hostNeeds;
export const L1 = vector('ext4-L1.lsmt');
export const L2 = vector('ext4-L2.zstd.zlsmt');

export async function manifestTree(): Promise<TreeSnapshot> {
  const m = JSON.parse(await readFile(vector('manifest.json'), 'utf8')) as { ext4_merged_tree: TreeSnapshot };
  return sorted(m.ext4_merged_tree);
}

/** The mounted tree in the manifest's shape: mode in octal, inode numbers, content hashes (lost+found left out). */
export async function snapshot(root: string, rel = ''): Promise<TreeSnapshot> {
  const out: TreeSnapshot = {};
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = `${rel}/${name}`;
    if (path === '/lost+found') continue;
    const st = await lstat(join(root, path));
    const node: ManifestNode = { inode: st.ino, mode: st.mode.toString(8), uid: st.uid, gid: st.gid };
    if (st.isFile()) {
      node.size = st.size;
      node.sha256 = createHash('sha256').update(await readFile(join(root, path))).digest('hex');
    } else if (st.isSymbolicLink()) {
      node.target = await readlink(join(root, path));
    }
    out[path] = node;
    if (st.isDirectory()) Object.assign(out, await snapshot(root, path));
  }
  return rel === '' ? sorted(out) : out;
}

export function sorted(tree: TreeSnapshot): TreeSnapshot {
  return Object.fromEntries(Object.keys(tree).sort().map((k) => [k, tree[k]!]));
}

/** Runs dadi with the test's state directory; fails the test on a non-zero exit. */
export async function dadi(stateDir: string, args: string[]): Promise<string> {
  const r = await runDadi(args, { env: { DADI_STATE_DIR: stateDir } });
  assert.equal(r.code, 0, `dadi ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.toString();
}

export async function mountJson(stateDir: string, args: string[]): Promise<MountRecord> {
  return JSON.parse(await dadi(stateDir, ['mount', '--json', ...args])) as MountRecord;
}
