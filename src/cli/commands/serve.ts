/**
 * `dadi serve IMAGE|LAYER... --listen unix:PATH|tcp:HOST:PORT`: serve an image as an NBD export
 * until SIGTERM/SIGINT, then stop accepting, drain, flush, close and exit 0. A registry reference
 * (or oci:DIR[:TAG]) is attached lazily through the block cache; local files open directly.
 * Readiness: a unix socket path appears only once the server accepts; the "listening" line (or
 * JSON with --json), --ready-fd and --pid-file are written at that moment too.
 */
import type { Command } from 'commander';
import { addRemoteOptions, type RemoteFlags } from '../remote-options.ts';
import { required } from '../required.ts';
import type { RemoteImage } from '../../image/remote.ts';
import type { Disk } from '../../io/types.ts';

interface ServeOptions extends RemoteFlags {
  listen?: string;
  writable?: string;
  exportName?: string;
  size?: string;
  readOnly?: boolean;
  json?: boolean;
  pidFile?: string;
  readyFd?: string;
  description?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve an image (registry reference, OCI layout, device config JSON, or layer files lowest first) as an NBD export')
    .argument('[image...]', 'host[:port]/repo[:tag][@sha256:...] or oci:DIR[:TAG] (fetched lazily), config.v1.json, or layer files lowest first (plain, ZFile or tar-wrapped; DATA,INDEX for a writable pair read-only)')
    .option('--listen <addr>', 'where to listen (required): unix:PATH or tcp:HOST:PORT (port 0 picks one)')
    .option('--writable <dir>', 'keep a writable layer in DIR (writable_data + writable_index; created if absent)')
    .option('--export-name <name>', 'the export name clients ask for (the empty name works too)', '')
    .option('--size <size>', 'virtual size of a new writable layer, or of the disk, e.g. 10G')
    .option('--read-only', 'refuse writes (a config\'s upper layer is then read as a lower)')
    .option('--description <text>', 'export description shown by nbdinfo')
    .option('--json', 'print the listening line as JSON')
    .option('--pid-file <file>', 'write the server pid here once listening (removed on exit)')
    .option('--ready-fd <fd>', 'write "ready\\n" to this inherited file descriptor once listening, then close it');
  addRemoteOptions(cmd)
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi serve 127.0.0.1:5000/app:v1-obd --listen unix:/run/dadi/app.sock',
      '  dadi serve registry.example.com/team/app:v1 --cache-dir /var/cache/dadi --writable /var/lib/dadi/rw --listen tcp:127.0.0.1:10809',
      '  dadi serve base.lsmt app.zlsmt --listen unix:/run/dadi/app.sock',
      '  dadi serve config.v1.json --listen tcp:127.0.0.1:10809',
      '  dadi serve base.lsmt --writable /var/lib/dadi/rw --listen unix:/tmp/rw.sock',
      '  nbdinfo "nbd+unix:///?socket=/tmp/rw.sock"',
    ].join('\n'))
    .action(async (image: string[], opts: ServeOptions) => {
      const { resolve } = await import('node:path');
      const { writeFile, rm } = await import('node:fs/promises');
      const { createWriteStream } = await import('node:fs');
      const { NbdServer, parseListenAddress, formatListenAddress } = await import('../../nbd/server.ts');
      const { openLocalImage } = await import('../../image/local.ts');
      const { pickRemoteImage, remoteImageOptions, withP2P } = await import('../remote-options.ts');
      const { parseSize } = await import('../../util/size.ts');
      const { log } = await import('../../util/log.ts');
      const { errorMessage } = await import('../../errors.ts');

      const addr = parseListenAddress(required(opts.listen, '--listen'));
      const readyFd = opts.readyFd === undefined ? undefined : Number(opts.readyFd);
      if (readyFd !== undefined && (!Number.isInteger(readyFd) || readyFd < 3)) throw new Error(`--ready-fd ${opts.readyFd}: expected a descriptor number >= 3`);
      const ref = await pickRemoteImage(image);
      let remote: RemoteImage | undefined;
      let disk: Disk;
      let closeP2P = async (): Promise<void> => {};
      if (ref) {
        if (opts.size) throw new Error('--size does not apply to a registry image: its size is that of its layers');
        if (opts.readOnly && opts.writable) throw new Error('--read-only and --writable exclude each other');
        const { openRemoteImage } = await import('../../image/remote.ts');
        const p2p = await withP2P(opts, await remoteImageOptions(opts));
        try {
          remote = await openRemoteImage(ref, { ...p2p.opts, ...(opts.writable ? { writableDir: resolve(opts.writable) } : {}) });
        } catch (err) {
          await p2p.close();
          throw err;
        }
        closeP2P = p2p.close;
        disk = remote.disk;
      } else {
        disk = await openLocalImage(image, {
          ...(opts.writable ? { writableDir: resolve(opts.writable) } : {}),
          ...(opts.size ? { size: parseSize(opts.size) } : {}),
          ...(opts.readOnly ? { readOnly: true } : {}),
        });
      }
      const closeImage = async (): Promise<void> => {
        await (remote ? remote.close() : disk.close());
        await closeP2P();
      };
      const exportName = opts.exportName ?? '';
      const server = new NbdServer(disk, { exportName, description: opts.description ?? image.join(' ') });
      try {
        await server.listen(addr);
      } catch (err) {
        await closeImage();
        throw err;
      }
      const bound = server.address;
      const pidFile = opts.pidFile ? resolve(opts.pidFile) : undefined;
      if (pidFile) await writeFile(pidFile, `${process.pid}\n`);
      const info = {
        listen: formatListenAddress(bound), uri: server.uri, size: disk.size, writable: disk.writable, exportName, pid: process.pid,
        ...(remote ? { image: remote.info.reference, manifestDigest: remote.info.manifestDigest, attach: remote.info.attach } : {}),
      };
      process.stdout.write(opts.json ? `${JSON.stringify(info)}\n`
        : `listening on ${info.listen} (${info.uri}), ${info.size} bytes, ${info.writable ? 'writable' : 'read-only'}` +
          `${remote ? `; attached ${remote.info.reference} with ${remote.info.attach.bytes} bytes in ${remote.info.attach.requests} request(s)` : ''}\n`);
      if (readyFd !== undefined) {
        const s = createWriteStream('', { fd: readyFd });
        s.end('ready\n');
      }
      log.info(info, 'nbd server listening');

      await new Promise<void>((done) => {
        let stopping = false;
        const stop = (signal: NodeJS.Signals): void => {
          if (stopping) {
            log.warn({ signal }, 'second signal: exiting without waiting');
            process.exit(1);
          }
          stopping = true;
          log.info({ signal }, 'stopping: draining connections');
          (async () => {
            await server.close();
            if (disk.writable) await disk.flush();
            await closeImage();
          })().then(() => {
            log.info('stopped');
            done();
          }, (err) => {
            log.error({ err: errorMessage(err) }, 'failed to flush or close the disk');
            process.exitCode = 1;
            done();
          });
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      if (pidFile) await rm(pidFile, { force: true });
    });
}
