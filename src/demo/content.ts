/**
 * The demo image's content: three layers (a base with /etc files, binary-like files, a symlink
 * and a hard link; an app layer; an update that overrides one file and whites out another),
 * generated deterministically so every run builds the same digests, plus the tree the mounted
 * image must show, so the demo can prove what it read back is what it built.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import * as tar from 'tar-stream';

const gzipAsync = promisify(gzip);

export type EntryType = 'file' | 'directory' | 'symlink';

/** What one path of the final (merged) tree is. */
export interface ExpectedEntry {
  type: EntryType;
  /** Files: size and sha256 of the content; symlinks: target. */
  size?: number;
  sha256?: string;
  target?: string;
  mode: number;
}

export interface DemoLayer {
  /** What the layer does, for the log. */
  title: string;
  tar: Buffer;
  gzip: Buffer;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  entries: number;
}

export interface DemoContent {
  layers: DemoLayer[];
  /** The merged tree, by path relative to the root (no leading slash), lost+found excluded. */
  tree: Map<string, ExpectedEntry>;
  /** The file the demo reads back after mounting, and its content. */
  readPath: string;
  readContent: Buffer;
  /** Removed by a whiteout in the top layer: must be absent from the mount. */
  whitedOut: string;
  /** A hard link pair: the two paths must share one inode. */
  hardLink: [string, string];
}

/** Bytes that look like a binary (incompressible), the same on every run for a given name. */
export function pseudoRandom(name: string, size: number): Buffer {
  const seed = createHash('sha256').update(`dadi-demo:${name}`).digest();
  const cipher = createCipheriv('aes-128-ctr', seed.subarray(0, 16), seed.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

type Spec =
  | { type: 'directory'; name: string; mode?: number }
  | { type: 'file'; name: string; data: Buffer; mode?: number }
  | { type: 'symlink'; name: string; target: string }
  | { type: 'link'; name: string; target: string };

const MTIME = new Date('2024-01-01T00:00:00Z');

async function packLayer(specs: Spec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const s of specs) {
    const header: Partial<tar.Header> & { name: string } = s.type === 'directory' ? { name: `${s.name}/`, type: 'directory', mode: s.mode ?? 0o755 }
      : s.type === 'file' ? { name: s.name, type: 'file', mode: s.mode ?? 0o644, size: s.data.length }
        : { name: s.name, type: s.type, linkname: s.target, mode: s.type === 'symlink' ? 0o777 : 0o755 };
    const data = s.type === 'file' ? s.data : '';
    await new Promise<void>((resolve, reject) => {
      pack.entry({ uid: 0, gid: 0, mtime: MTIME, ...header }, data, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Applies one layer's specs to the expected tree, OCI-style (whiteouts delete, later wins). */
function applyToTree(tree: Map<string, ExpectedEntry>, specs: Spec[]): void {
  for (const s of specs) {
    const slash = s.name.lastIndexOf('/');
    const base = s.name.slice(slash + 1);
    if (base.startsWith('.wh.')) {
      tree.delete(`${s.name.slice(0, slash + 1)}${base.slice(4)}`);
      continue;
    }
    if (s.type === 'directory') tree.set(s.name, { type: 'directory', mode: s.mode ?? 0o755 });
    else if (s.type === 'file') tree.set(s.name, { type: 'file', size: s.data.length, sha256: sha256(s.data), mode: s.mode ?? 0o644 });
    else if (s.type === 'symlink') tree.set(s.name, { type: 'symlink', target: s.target, mode: 0o777 });
    else tree.set(s.name, { ...tree.get(s.target)! });
  }
}

/**
 * Builds the layers. `binaryBytes` sizes the binary-like files of the base layer together (the
 * bulk of the image, which a lazy attach should never fetch).
 */
export async function generateDemoContent(binaryBytes = 4 << 20): Promise<DemoContent> {
  const motd = Buffer.from('Welcome to dadi: this file came from the top layer, fetched on demand.\n' +
    'Only the blocks this read touched were fetched from the registry.\n');
  const layers: Array<{ title: string; specs: Spec[] }> = [
    {
      title: 'base: /etc files, binaries, a symlink and a hard link',
      specs: [
        { type: 'directory', name: 'etc' },
        { type: 'file', name: 'etc/os-release', data: Buffer.from('NAME="dadi demo"\nID=dadi-demo\nVERSION_ID=1\n') },
        { type: 'file', name: 'etc/hostname', data: Buffer.from('dadi-demo\n') },
        { type: 'file', name: 'etc/motd', data: Buffer.from('This line is overridden by the top layer.\n') },
        { type: 'file', name: 'etc/legacy.conf', data: Buffer.from('# removed by a whiteout in the top layer\n') },
        { type: 'directory', name: 'usr' },
        { type: 'directory', name: 'usr/bin' },
        { type: 'directory', name: 'usr/lib' },
        { type: 'file', name: 'usr/bin/demo-tool', data: pseudoRandom('usr/bin/demo-tool', Math.ceil(binaryBytes / 2)), mode: 0o755 },
        { type: 'link', name: 'usr/bin/demo-tool-alias', target: 'usr/bin/demo-tool' },
        { type: 'file', name: 'usr/lib/libdemo.so.1', data: pseudoRandom('usr/lib/libdemo.so.1', Math.floor(binaryBytes / 2)), mode: 0o755 },
        { type: 'symlink', name: 'usr/lib/libdemo.so', target: 'libdemo.so.1' },
      ],
    },
    {
      title: 'app: /app with a script, its config and data',
      specs: [
        { type: 'directory', name: 'app' },
        { type: 'file', name: 'app/run.sh', data: Buffer.from('#!/bin/sh\nexec /usr/bin/demo-tool --config /app/config.json "$@"\n'), mode: 0o755 },
        { type: 'file', name: 'app/config.json', data: Buffer.from(`${JSON.stringify({ listen: ':8080', workers: 2 }, null, 2)}\n`) },
        { type: 'file', name: 'app/data.bin', data: pseudoRandom('app/data.bin', 256 * 1024) },
      ],
    },
    {
      title: 'update: overrides /etc/motd, whites out /etc/legacy.conf',
      specs: [
        { type: 'directory', name: 'etc' },
        { type: 'file', name: 'etc/motd', data: motd },
        { type: 'file', name: 'etc/.wh.legacy.conf', data: Buffer.alloc(0) },
      ],
    },
  ];
  const tree = new Map<string, ExpectedEntry>();
  const out: DemoLayer[] = [];
  for (const l of layers) {
    applyToTree(tree, l.specs);
    const tarBytes = await packLayer(l.specs);
    out.push({ title: l.title, tar: tarBytes, gzip: await gzipAsync(tarBytes), diffId: `sha256:${sha256(tarBytes)}`, entries: l.specs.length });
  }
  return {
    layers: out, tree, readPath: 'etc/motd', readContent: motd, whitedOut: 'etc/legacy.conf',
    hardLink: ['usr/bin/demo-tool', 'usr/bin/demo-tool-alias'],
  };
}
