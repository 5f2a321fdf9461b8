/**
 * `dadi ls IMAGE|LAYER... [PATH]`: list a directory of an image's file system without mounting it,
 * read in userspace (a registry image is fetched lazily: only the metadata blocks the listing
 * needs). The last argument is the path inside the image when it starts with '/' and there is
 * more than one argument.
 */
import type { Command } from 'commander';
import { addRemoteOptions, type RemoteFlags } from '../remote-options.ts';

interface LsOptions extends RemoteFlags { long?: boolean; recursive?: boolean; json?: boolean }

const TYPE_CHAR: Record<string, string> = {
  'file': '-', 'directory': 'd', 'symlink': 'l', 'character-device': 'c', 'block-device': 'b', 'fifo': 'p', 'socket': 's', 'unknown': '?',
};

function modeString(kind: string, mode: number): string {
  const bits = 'rwxrwxrwx'.split('').map((c, i) => ((mode >> (8 - i)) & 1 ? c : '-'));
  if (mode & 0o4000) bits[2] = bits[2] === 'x' ? 's' : 'S';
  if (mode & 0o2000) bits[5] = bits[5] === 'x' ? 's' : 'S';
  if (mode & 0o1000) bits[8] = bits[8] === 'x' ? 't' : 'T';
  return (TYPE_CHAR[kind] ?? '?') + bits.join('');
}

/** Splits the arguments into the image and the path inside it. */
export function imageAndPath(args: string[], pathRequired: boolean): { image: string[]; path: string } {
  if (pathRequired) {
    if (args.length < 2) throw new Error('give the image (or its layers) and then a path inside it');
    return { image: args.slice(0, -1), path: args[args.length - 1]! };
  }
  const last = args[args.length - 1]!;
  if (args.length > 1 && last.startsWith('/')) return { image: args.slice(0, -1), path: last };
  return { image: args, path: '/' };
}

export function register(program: Command): void {
  const cmd = program
    .command('ls')
    .description('list a directory of an image\'s file system, read in userspace without mounting')
    .argument('<image-and-path...>', 'IMAGE|LAYER... [PATH]: a registry reference, oci:DIR[:TAG], a device config JSON or layer files lowest first, then the path inside the image (default /)')
    .option('-l, --long', 'mode, links, owner, size, mtime and symlink targets')
    .option('-R, --recursive', 'list subdirectories too, with paths')
    .option('--json', 'one JSON object per entry (name, path, kind, mode, uid, gid, size, nlink, mtime, target, rdev)');
  addRemoteOptions(cmd)
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi ls 127.0.0.1:5000/app:v1-obd /etc',
      '  dadi ls -lR oci:/srv/images/app-obd:1 /usr/bin',
      '  dadi ls base.lsmt app.zlsmt /',
    ].join('\n'))
    .action(async (args: string[], opts: LsOptions) => {
      const { withImageReader } = await import('../../image/open-image.ts');
      const { remoteImageOptions } = await import('../remote-options.ts');
      const { image, path } = imageAndPath(args, false);
      await withImageReader(image, () => remoteImageOptions(opts), async (fs) => {
        const out: string[] = [];
        const flush = () => { if (out.length > 0) { process.stdout.write(out.join('')); out.length = 0; } };
        const show = async (full: string, name: string, ino: number): Promise<void> => {
          const inode = await fs.inode(ino);
          const st = await fs.statInode(inode);
          const target = st.kind === 'symlink' ? await fs.readlinkInode(inode) : undefined;
          const mtime = new Date(st.mtime.sec * 1000).toISOString().replace(/\.000Z$/, `.${String(st.mtime.nsec).padStart(9, '0')}Z`);
          if (opts.json) {
            out.push(`${JSON.stringify({ name, path: full, kind: st.kind, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink: st.nlink, mtime, ino: st.ino,
              ...(target !== undefined ? { target } : {}), ...(st.rdev ? { rdev: st.rdev } : {}) })}\n`);
          } else if (opts.long) {
            const size = st.rdev ? `${st.rdev.major}, ${st.rdev.minor}` : String(st.size);
            out.push(`${modeString(st.kind, st.mode)} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ${size.padStart(10)} ${mtime} ${opts.recursive ? full : name}${target !== undefined ? ` -> ${target}` : ''}\n`);
          } else {
            out.push(`${opts.recursive ? full : name}\n`);
          }
          if (out.length >= 512) flush();
        };
        const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
        const listDir = async (dir: string): Promise<void> => {
          const entries = await fs.list(dir);
          for (const e of entries) await show(join(dir, e.name), e.name, e.ino);
          if (opts.recursive) for (const e of entries) if (e.kind === 'directory') await listDir(join(dir, e.name));
        };
        const st = await fs.stat(path, true);
        if (st.kind === 'directory') await listDir(path.replace(/(.)\/+$/, '$1') || '/');
        else await show(path, path.slice(path.lastIndexOf('/') + 1), st.ino);
        flush();
      });
    });
}
