/**
 * What the privileged steps need on this host, checked before trying them, so the demo can say
 * exactly what it skipped and why instead of failing halfway through a mount. Converting and
 * mounting both attach an NBD export as a block device (kernel nbd, else nbdfuse + a loop
 * device, as src/host/attach.ts chooses) and mount ext4; converting also runs mkfs.ext4.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chooseAttachMethod } from '../host/attach.ts';

export interface Prerequisites {
  /** Missing for `dadi convert` (empty: it can run). */
  convert: string[];
  /** Missing for mounting the converted image. */
  mount: string[];
  attachMethod: 'kernel-nbd' | 'nbdfuse';
}

function onPath(cmd: string, path: string): boolean {
  return path.split(delimiter).some((dir) => {
    if (!dir) return false;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const CAP_SYS_ADMIN = 21n;

/** Whether this process may mount and set up loop devices: root in a container may not. */
function hasSysAdmin(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? ((BigInt(`0x${m[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n : true;
}

/** Checks root, capabilities, device nodes and tools; `path` is the search path (default $PATH). */
export function checkPrerequisites(path = process.env.PATH ?? ''): Prerequisites {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (mounting and loop devices need it; run with sudo)');
  else if (!hasSysAdmin()) missing.push('CAP_SYS_ADMIN (root without it cannot mount; in a container, run it --privileged)');
  const attachMethod = chooseAttachMethod();
  const tools = ['mount', 'umount'];
  if (attachMethod === 'nbdfuse') {
    if (!existsSync('/dev/fuse')) missing.push('/dev/fuse (load the fuse module, or pass --device /dev/fuse to the container)');
    tools.push('nbdfuse', 'fusermount3', 'losetup');
  }
  const hint: Record<string, string> = {
    nbdfuse: 'nbdfuse (apt-get install libnbd-bin)', fusermount3: 'fusermount3 (apt-get install fuse3)',
    losetup: 'losetup (apt-get install mount)', 'mkfs.ext4': 'mkfs.ext4 (apt-get install e2fsprogs)',
  };
  for (const t of tools) if (!onPath(t, path)) missing.push(hint[t] ?? t);
  const convert = [...missing];
  if (!onPath('mkfs.ext4', path)) convert.push(hint['mkfs.ext4']!);
  return { convert, mount: missing, attachMethod };
}
