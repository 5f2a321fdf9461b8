/**
 * The kernel nbd driver path: `nbd-client -unix SOCKET /dev/nbdN` connects a free /dev/nbdN to
 * the export. Chosen only when the nbd module is loaded (/dev/nbd0 exists) and nbd-client is
 * installed; otherwise attach goes through nbdfuse + a loop device.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { HostStepError, runStep, runTool, waitFor } from './run-tool.ts';

export function kernelNbdAvailable(): boolean {
  return existsSync('/dev/nbd0') && ['/usr/sbin/nbd-client', '/sbin/nbd-client', '/usr/bin/nbd-client'].some((p) => existsSync(p));
}

/** A connected nbd device has a `pid` attribute (the client that holds it) in sysfs. */
async function inUse(name: string): Promise<boolean> {
  return existsSync(`/sys/block/${name}/pid`) || (await sizeOf(name)) > 0;
}

async function sizeOf(name: string): Promise<number> {
  try {
    return Number((await readFile(`/sys/block/${name}/size`, 'utf8')).trim());
  } catch {
    return 0;
  }
}

export async function attachKernelNbd(socket: string, opts: { readOnly: boolean }): Promise<string> {
  const names = (await readdir('/sys/block')).filter((n) => /^nbd\d+$/.test(n))
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  for (const name of names) {
    if (await inUse(name)) continue;
    const device = `/dev/${name}`;
    const r = await runTool(['nbd-client', '-unix', socket, device, '-b', '512', ...(opts.readOnly ? ['-readonly'] : [])]);
    if (r.code !== 0) {
      // Another attacher may have taken it between our check and nbd-client; try the next one.
      if (/busy|in use|already/i.test(r.stderr)) continue;
      throw new HostStepError('attach nbd device', `nbd-client -unix ${socket} ${device} failed`, r.stderr);
    }
    await waitFor(`${device} to report its size`, async () => ((await sizeOf(name)) > 0 ? true : undefined), 10_000);
    // As for loop devices: blocks cached from the device's previous export must not be read.
    await runStep('flush nbd device buffers', ['blockdev', '--flushbufs', device]);
    return device;
  }
  throw new HostStepError('attach nbd device', 'no free /dev/nbd* device');
}

export async function detachKernelNbd(device: string): Promise<void> {
  const name = basename(device);
  if (!(await inUse(name))) return;
  await runStep('detach nbd device', ['nbd-client', '-d', device]);
}
