/**
 * The layers of the conversion tests: every tar feature an image uses, spread over three layers
 * so that whiteouts, opaque directories and hard links reach into lower layers. Every directory a
 * layer changes is listed in that layer (as image builders do), so directory times are the
 * layer's and not the time of extraction.
 */
import { createHash } from 'node:crypto';
import { packTar, RawTar, type PackEntry } from '../apply/tar-build.ts';

const T = (s: number) => new Date(s * 1000);

export function pseudoRandom(n: number, seed: string): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}/${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

export const LONG_DIR = `long/${'d'.repeat(90)}`;
export const LONG_FILE = `${LONG_DIR}/${'f'.repeat(120)}`;
/** security.capability v2 (cap_net_raw+ep): binary, with bytes that are not text. */
export const CAPS = Buffer.from('0000000200200000000000000000000000000000', 'hex');
CAPS.writeUInt32LE(0x02000001, 0);

/** Layer 0: files of every kind and attribute. */
export function baseLayer(): Promise<Buffer> {
  return packTar([
    { name: 'etc', type: 'directory', mode: 0o755, mtime: T(1_600_000_001) },
    { name: 'etc/passwd', mode: 0o644, data: 'root:x:0:0:root:/root:/bin/sh\n' },
    { name: 'etc/secret', mode: 0o600, uid: 1000, gid: 1000, mtime: T(1_500_000_000), data: 'secret\n' },
    { name: 'usr', type: 'directory', mode: 0o755, mtime: T(1_600_000_002) },
    { name: 'usr/bin', type: 'directory', mode: 0o755, mtime: T(1_600_000_003) },
    { name: 'usr/bin/tool', mode: 0o755, data: pseudoRandom(3 << 20, 'tool') },
    { name: 'usr/bin/su', mode: 0o4755, data: '#!/bin/sh\necho su\n' },
    { name: 'usr/bin/wall', mode: 0o2755, gid: 5, data: '#!/bin/sh\necho wall\n' },
    { name: 'usr/lib', type: 'directory', mode: 0o755, mtime: T(1_600_000_004) },
    { name: 'usr/lib/libx.so.1', mode: 0o644, data: pseudoRandom(70_000, 'lib') },
    { name: 'usr/lib/libx.so', type: 'symlink', linkname: 'libx.so.1', mtime: T(1_400_000_000) },
    { name: 'usr/lib/abs', type: 'symlink', linkname: '/usr/bin/tool' },
    { name: 'usr/share', type: 'directory', mode: 0o755, mtime: T(1_600_000_005) },
    { name: 'usr/share/tool-again', type: 'link', linkname: 'usr/bin/tool' },
    { name: 'tmp', type: 'directory', mode: 0o1777, mtime: T(1_600_000_006) },
    { name: 'dev', type: 'directory', mode: 0o755, mtime: T(1_600_000_007) },
    { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
    { name: 'dev/sda', type: 'block-device', mode: 0o660, gid: 6, devmajor: 8, devminor: 0 },
    { name: 'dev/initctl', type: 'fifo', mode: 0o600 },
    { name: 'data', type: 'directory', mode: 0o750, uid: 33, gid: 33, mtime: T(1_600_000_008) },
    { name: 'data/attrs', mode: 0o644, uid: 33, gid: 33, data: 'x\n', pax: { 'SCHILY.xattr.user.origin': 'layer0', 'SCHILY.xattr.user.k': 'a=b c' } },
    { name: 'data/empty', mode: 0o400, data: '' },
    { name: 'long', type: 'directory', mode: 0o755, mtime: T(1_600_000_009) },
    { name: LONG_DIR, type: 'directory', mode: 0o700, mtime: T(1_600_000_010) },
    { name: LONG_FILE, mode: 0o644, data: 'a PAX path\n' },
    { name: 'old', type: 'directory', mode: 0o755, mtime: T(1_600_000_011) },
    { name: 'old/a', mode: 0o644, data: 'a\n' },
    { name: 'old/sub', type: 'directory', mode: 0o755, mtime: T(1_600_000_012) },
    { name: 'old/sub/b', mode: 0o644, data: 'b\n' },
    { name: 'gone', type: 'directory', mode: 0o755, mtime: T(1_600_000_013) },
    { name: 'gone/x', mode: 0o644, data: 'x\n' },
  ]);
}

/**
 * Layer 1, hand-built (binary PAX xattr values): a whiteout, an opaque directory, a changed
 * file, security.capability, and a hard link to a file of layer 0 from another directory.
 */
export function middleLayer(): Buffer {
  return new RawTar()
    .entry({ name: 'etc/', flag: '5', mode: 0o755, mtime: 1_650_000_001 })
    .entry({ name: 'etc/.wh.secret', flag: '0', mode: 0o644 })
    .entry({ name: 'etc/passwd', flag: '0', mode: 0o644, mtime: 1_650_000_002 }, 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n')
    .entry({ name: 'old/', flag: '5', mode: 0o755, mtime: 1_650_000_003 })
    .entry({ name: 'old/.wh..wh..opq', flag: '0', mode: 0o644 })
    .entry({ name: 'old/new', flag: '0', mode: 0o644, uid: 7, gid: 8 }, 'new in layer 1\n')
    .entry({ name: 'usr/', flag: '5', mode: 0o755, mtime: 1_650_000_004 })
    .entry({ name: 'usr/bin/', flag: '5', mode: 0o755, mtime: 1_650_000_005 })
    .pax([['SCHILY.xattr.security.capability', CAPS], ['SCHILY.xattr.user.bin', Buffer.from([0, 0xff, 0x0a, 0x3d])]])
    .entry({ name: 'usr/bin/ping', flag: '0', mode: 0o755, mtime: 1_650_000_006 }, '#!/bin/sh\necho ping\n')
    .entry({ name: 'app/', flag: '5', mode: 0o755, uid: 1000, gid: 1000, mtime: 1_650_000_007 })
    .entry({ name: 'app/tool-link', flag: '1', linkname: 'usr/bin/tool' })
    .end();
}

/**
 * Layer 2: a whole directory whited out, a file replaced by a symlink, a file rewritten, and an
 * absolute name (taken relative to the root, as containerd and GNU tar do).
 */
export function topLayer(): Promise<Buffer> {
  return packTar([
    { name: '.wh.gone', mode: 0o644, data: '' },
    { name: 'etc', type: 'directory', mode: 0o755, mtime: T(1_700_000_004) },
    { name: '/etc/absolute', mode: 0o640, data: 'inside the root\n' },
    { name: 'data', type: 'directory', mode: 0o750, uid: 33, gid: 33, mtime: T(1_700_000_001) },
    { name: 'data/empty', type: 'symlink', linkname: 'attrs' },
    { name: 'usr', type: 'directory', mode: 0o755, mtime: T(1_700_000_002) },
    { name: 'usr/bin', type: 'directory', mode: 0o755, mtime: T(1_700_000_003) },
    { name: 'usr/bin/su', mode: 0o4750, data: '#!/bin/sh\necho su v2\n' },
  ]);
}

const f = (name: string, data = 'x\n'): PackEntry => ({ name, mode: 0o644, data });
const sym = (name: string, linkname: string): PackEntry => ({ name, type: 'symlink', linkname });

/**
 * Layers that try to write outside the root, each as the list of tars of one image, with the entry
 * conversion must name and the reason it must give.
 */
export async function hostileImages(): Promise<Array<{ name: string; tars: Buffer[]; failingLayer: number; entry: string; why: RegExp }>> {
  return [
    { name: 'dotdot', tars: [await packTar([f('fine'), f('sub/../../dadi-escape')])], failingLayer: 0, entry: 'sub/../../dadi-escape', why: /escapes the root/ },
    { name: 'hardlink-out', tars: [await packTar([f('fine'), { name: 'hl', type: 'link', linkname: '../../etc/passwd' }])], failingLayer: 0, entry: 'hl', why: /hard link target .* escapes the root/ },
    { name: 'same-layer-symlink', tars: [await packTar([sym('evil', '/'), f('evil/tmp/dadi-escape')])], failingLayer: 0, entry: 'evil/tmp/dadi-escape', why: /"evil", which is a symlink/ },
    { name: 'lower-layer-symlink', tars: [await packTar([sym('lnk', '../../../../../../tmp'), f('ok')]), await packTar([f('lnk/dadi-escape')])],
      failingLayer: 1, entry: 'lnk/dadi-escape', why: /"lnk", which is a symlink/ },
  ];
}
