/**
 * The mount records: one JSON file per mount point under the state directory, so `dadi umount`
 * in another process knows what `dadi mount` started. Each record is rewritten (atomically, by
 * rename) after every attach step, so a crash part-way leaves exactly what needs undoing.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProcessIdentity } from './processes.ts';

export interface MountRecord {
  version: 1;
  mountPoint: string;
  /** The per-mount working directory (socket, logs, nbdfuse dir). */
  workDir: string;
  image: string[];
  readOnly: boolean;
  writableDir?: string;
  server: { identity?: ProcessIdentity; socket: string; log: string; argv: string[] };
  attach?: { kind: 'nbdfuse'; fuseDir: string; nbdfuse?: ProcessIdentity; loopDevice?: string } | { kind: 'kernel-nbd'; device?: string };
  /** The block device the file system is on, once attached. */
  device?: string;
  fsType?: string;
  mounted?: boolean;
  createdAt: string;
}

export function stateDir(): string {
  return process.env.DADI_STATE_DIR ?? '/run/dadi';
}

/** Short, filesystem-safe name for a mount point (socket paths must stay under 108 bytes). */
export function mountKey(mountPoint: string): string {
  return createHash('sha256').update(mountPoint).digest('hex').slice(0, 16);
}

export function recordPath(dir: string, mountPoint: string): string {
  return join(dir, 'mounts', `${mountKey(mountPoint)}.json`);
}

export function workDirFor(dir: string, mountPoint: string): string {
  return join(dir, 'work', mountKey(mountPoint));
}

export class MountRecordExists extends Error {
  override readonly name = 'MountRecordExists';
}

/** Creates the record; fails if one exists, which also serialises two mounts of the same DIR. */
export async function createRecord(dir: string, rec: MountRecord): Promise<void> {
  await mkdir(join(dir, 'mounts'), { recursive: true, mode: 0o700 });
  try {
    await writeFile(recordPath(dir, rec.mountPoint), JSON.stringify(rec, null, 2) + '\n', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MountRecordExists(`${rec.mountPoint} already has a dadi mount record (${recordPath(dir, rec.mountPoint)}); run \`dadi umount ${rec.mountPoint}\` first`);
    }
    throw err;
  }
}

export async function saveRecord(dir: string, rec: MountRecord): Promise<void> {
  const path = recordPath(dir, rec.mountPoint);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, path);
}

export async function loadRecord(dir: string, mountPoint: string): Promise<MountRecord | undefined> {
  let text: string;
  try {
    text = await readFile(recordPath(dir, mountPoint), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const rec = JSON.parse(text) as MountRecord;
  if (rec.version !== 1 || rec.mountPoint !== mountPoint) throw new Error(`${recordPath(dir, mountPoint)}: not a dadi mount record for ${mountPoint}`);
  return rec;
}

export async function listRecords(dir: string): Promise<MountRecord[]> {
  let names: string[];
  try {
    names = (await readdir(join(dir, 'mounts'))).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: MountRecord[] = [];
  for (const n of names.sort()) {
    try {
      out.push(JSON.parse(await readFile(join(dir, 'mounts', n), 'utf8')) as MountRecord);
    } catch { /* a record being replaced right now; skip it */ }
  }
  return out.sort((a, b) => a.mountPoint.localeCompare(b.mountPoint));
}

export async function removeRecord(dir: string, rec: MountRecord): Promise<void> {
  await rm(rec.workDir, { recursive: true, force: true });
  await rm(recordPath(dir, rec.mountPoint), { force: true });
}
