/**
 * Whether something outside the snapshotter still mounts a snapshot: an overlay whose upper,
 * work or lower dirs lie in the snapshot's directory (a running container), or a file system on
 * the snapshot's own block device mounted anywhere but at its mount point (a container's bind or
 * device mount). Read from /proc/self/mountinfo, whose super options list overlay's dirs.
 */
import { readFile } from 'node:fs/promises';

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function mountsUsing(snapshotDir: string, device: string | undefined, ownMountPoint: string): Promise<string | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = `${snapshotDir}/`;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0) continue;
    const mountPoint = unescape(fields[4] ?? '');
    const fsType = fields[sep + 1];
    const source = unescape(fields[sep + 2] ?? '');
    const superOptions = unescape(fields[sep + 3] ?? '');
    if (mountPoint.startsWith(prefix)) continue; // our own mounts inside the snapshot
    if (fsType === 'overlay' && superOptions.split(',').some((o) => /^(upperdir|workdir|lowerdir)=/.test(o) && o.includes(prefix))) {
      return `overlay mounted on ${mountPoint} uses it`;
    }
    if (device && source === device && mountPoint !== ownMountPoint) return `${device} is mounted on ${mountPoint}`;
  }
  return undefined;
}
