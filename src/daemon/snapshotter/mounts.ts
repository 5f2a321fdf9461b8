/**
 * The mounts a snapshot is returned as, following containerd's overlayfs snapshotter: a bind
 * mount when there is one directory to show, an overlay otherwise (lowerdir top first). Mounts
 * are data for the caller to perform; the snapshotter mounts only the devices under them.
 */
export interface MountSpec { type: string; source: string; options: string[] }

export function activeMounts(upper: string, work: string, lowerDirs: readonly string[]): MountSpec[] {
  if (lowerDirs.length === 0) return [{ type: 'bind', source: upper, options: ['rbind', 'rw'] }];
  return [{
    type: 'overlay', source: 'overlay',
    options: ['index=off', `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lowerDirs.join(':')}`],
  }];
}

export function viewMounts(own: string, lowerDirs: readonly string[]): MountSpec[] {
  if (lowerDirs.length === 0) return [{ type: 'bind', source: own, options: ['rbind', 'ro'] }];
  if (lowerDirs.length === 1) return [{ type: 'bind', source: lowerDirs[0]!, options: ['rbind', 'ro'] }];
  return [{ type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${lowerDirs.join(':')}`] }];
}
