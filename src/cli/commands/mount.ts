/**
 * `dadi mount IMAGE|LAYER... DIR`: serve the image with `dadi serve` on a private unix socket,
 * attach the export as a block device and mount its file system on DIR (the last argument).
 * A registry reference is attached lazily by that server, with the cache and registry flags
 * passed on. `dadi mount --list` shows the recorded mounts.
 */
import type { Command } from 'commander';
import { addRemoteOptions, type RemoteFlags } from '../remote-options.ts';

interface MountOptions extends RemoteFlags { writable?: string; readOnly?: boolean; size?: string; options?: string; json?: boolean; list?: boolean }

async function list(json: boolean): Promise<void> {
  const { listMounts } = await import('../../host/image-mount.ts');
  const mounts = await listMounts();
  if (json) {
    process.stdout.write(JSON.stringify(mounts, null, 2) + '\n');
    return;
  }
  if (mounts.length === 0) return;
  process.stdout.write('MOUNT POINT\tSTATUS\tMODE\tDEVICE\tIMAGE\n');
  for (const m of mounts) {
    process.stdout.write(`${m.mountPoint}\t${m.status}\t${m.readOnly ? 'ro' : 'rw'}\t${m.device ?? '-'}\t${m.image.join(' ')}${m.writableDir ? `\twritable=${m.writableDir}` : ''}\n`);
  }
}

export function register(program: Command): void {
  const cmd = program
    .command('mount')
    .description('serve an image (registry reference, OCI layout, device config JSON, or layer files lowest first) and mount its file system on DIR')
    .argument('[image-and-dir...]', 'IMAGE|LAYER... DIR — the image (host[:port]/repo[:tag][@sha256:...], oci:DIR[:TAG], config.v1.json, or layers lowest first), then the mount point')
    .option('--writable <dir>', 'keep a writable layer in DIR (created if empty; size from the lowers unless --size)')
    .option('--read-only', 'serve and mount read-only (the default when there is no writable layer; with --writable, the layer is only read)')
    .option('--size <size>', 'virtual size of a new writable layer (default: that of the lowers), e.g. 10G')
    .option('-o, --options <opts>', 'extra mount options, comma-separated')
    .option('--json', 'print the mount record as JSON')
    .option('--list', 'list the dadi mounts instead ($DADI_STATE_DIR, default /run/dadi)');
  addRemoteOptions(cmd)
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi mount 127.0.0.1:5000/app:v1-obd /mnt/app',
      '  dadi mount --writable /var/lib/w --cache-dir /var/cache/dadi registry.example.com/team/app:v1 /mnt/app',
      '  dadi mount base.lsmt app.zlsmt /mnt/app',
      '  dadi mount --writable /var/lib/w base.lsmt /mnt/app',
      '  dadi mount --list',
    ].join('\n'))
    .action(async (args: string[], opts: MountOptions) => {
      if (opts.list) {
        if (args.length > 0) throw new Error('--list takes no IMAGE or DIR');
        await list(opts.json ?? false);
        return;
      }
      if (args.length < 2) {
        const { UsageError } = await import('../../errors.ts');
        throw new UsageError('dadi mount needs IMAGE (or layer files) and DIR');
      }
      const { resolve } = await import('node:path');
      const { mountImage } = await import('../../host/image-mount.ts');
      const image = args.slice(0, -1);
      const dir = args[args.length - 1]!;
      const writable = opts.writable ? resolve(opts.writable) : undefined;
      const { pickRemoteImage, remoteFlagArgs, remoteImageOptions } = await import('../remote-options.ts');
      const remote = await pickRemoteImage(image);
      if (remote) {
        if (opts.size) throw new Error('--size does not apply to a registry image: its size is that of its layers');
        await remoteImageOptions(opts); // bad flag values fail here, not in the detached server
      }
      const { dadiCommand } = await import('../self.ts');
      const rec = await mountImage({
        mountPoint: dir,
        image,
        // Without a writable layer the export is read-only and the mount follows it.
        readOnly: opts.readOnly ?? false,
        ...(writable ? { writableDir: writable } : {}),
        ...(opts.options ? { mountOptions: opts.options.split(',').filter(Boolean) } : {}),
        server: (socket) => [
          ...dadiCommand(), 'serve', ...image, '--listen', `unix:${socket}`,
          ...(writable ? ['--writable', writable] : []),
          ...(opts.readOnly ? ['--read-only'] : []),
          ...(opts.size ? ['--size', opts.size] : []),
          ...(remote ? remoteFlagArgs(opts) : []),
        ],
      });
      if (opts.json) process.stdout.write(JSON.stringify(rec, null, 2) + '\n');
      else process.stdout.write(`mounted ${image.join(' ')} on ${rec.mountPoint} (${rec.fsType}, ${rec.readOnly ? 'read-only' : 'writable'}, ${rec.device})\n`);
    });
}
