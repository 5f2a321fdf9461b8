/**
 * What mounting needs on this host, checked before trying it, so the demo can say exactly what it
 * skipped and why instead of failing halfway through a mount: attaching an NBD export as a block
 * device (kernel nbd, else nbdfuse + a loop device, as src/host/attach.ts chooses) and mounting
 * ext4. Converting needs none of it (dadi's userspace ext4 writer).
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chooseAttachMethod } from '../host/attach.ts';

export interface Prerequisites {
  /** Missing for mounting the converted image (empty: it can be mounted). */
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
    losetup: 'losetup (apt-get install mount)',
  };
  for (const t of tools) if (!onPath(t, path)) missing.push(hint[t] ?? t);
  return { mount: missing, attachMethod };
}
