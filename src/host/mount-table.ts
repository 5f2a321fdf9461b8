/**
 * What the kernel has mounted, from /proc/self/mountinfo. Teardown asks this instead of trusting
 * its own record, so each step can tell "already undone" from "still to undo".
 */
import { readFile } from 'node:fs/promises';

export interface MountEntry { mountPoint: string; fsType: string; source: string }

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    entries.push({ mountPoint: unescape(fields[4]!), fsType: fields[sep + 1]!, source: unescape(fields[sep + 2]!) });
  }
  return entries;
}

export async function mountTable(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The topmost mount at exactly `path`, if any. */
export async function mountAt(path: string): Promise<MountEntry | undefined> {
  const all = await mountTable();
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.mountPoint === path) return all[i];
  return undefined;
}
