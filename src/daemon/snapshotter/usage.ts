/**
 * Disk usage of a snapshot directory as containerd reports it: bytes allocated (st_blocks, so
 * sparse files count what they hold) and inodes, each hard-linked inode once.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Usage { size: number; inodes: number }

export async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  const out: Usage = { size: 0, inodes: 0 };
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(() => undefined);
    if (!st) return;
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.inodes++;
      out.size += st.blocks * 512;
    }
    if (st.isDirectory()) {
      const names = await readdir(path).catch(() => [] as string[]);
      for (const n of names) await visit(join(path, n));
    }
  };
  await visit(dir);
  return out;
}
