/**
 * Layers that exercise every entry type and metadata kind, shared by the tests of both apply
 * targets (the host directory and the userspace ext4).
 */
import { createHash } from 'node:crypto';
import { packTar, RawTar, type PackEntry } from './tar-build.ts';

const T = (s: number) => new Date(s * 1000);

export function pseudoRandom(n: number, seed: string): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}/${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

export const LONG_DIR = `deep/${'d'.repeat(90)}/${'e'.repeat(90)}`;
export const LONG_FILE = `${LONG_DIR}/${'f'.repeat(120)}`;
export const LONG_TARGET = `../${'t'.repeat(150)}/${'u'.repeat(60)}`;

/** One layer holding every entry type and metadata kind tar-stream can express. */
export function everyTypeEntries(): PackEntry[] {
  return [
    { name: 'd', type: 'directory', mode: 0o750, uid: 11, gid: 12, mtime: T(1_600_000_001) },
    { name: 'd/sticky', type: 'directory', mode: 0o1777, uid: 1234, gid: 5678, mtime: T(1_600_000_002) },
    { name: 'd/setuid', mode: 0o4755, data: '#!/bin/sh\n' },
    { name: 'd/setgid', mode: 0o2711, uid: 1000, gid: 1000, data: 'sgid\n' },
    { name: 'd/owned', mode: 0o640, uid: 4242, gid: 4343, mtime: T(1_500_000_000), data: 'owned\n' },
    { name: 'd/empty', mode: 0o600, data: '' },
    { name: 'd/big.bin', mode: 0o644, data: pseudoRandom(1 << 20, 'big') },
    { name: 'd/link', type: 'symlink', linkname: 'setuid', uid: 7, gid: 8, mtime: T(1_400_000_000) },
    { name: 'd/dangling', type: 'symlink', linkname: '/nowhere/at/all' },
    { name: 'other', type: 'directory', mode: 0o755, mtime: T(1_600_000_003) },
    { name: 'other/hl', type: 'link', linkname: 'd/owned' },
    { name: 'dev', type: 'directory', mode: 0o755, mtime: T(1_600_000_004) },
    { name: 'dev/null2', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
    { name: 'dev/blk', type: 'block-device', mode: 0o660, gid: 6, devmajor: 259, devminor: 65_537 },
    { name: 'dev/fifo', type: 'fifo', mode: 0o644, uid: 5, gid: 5 },
    { name: 'x', type: 'directory', mode: 0o755 },
    { name: 'x/attrs', mode: 0o644, data: 'xattrs\n', pax: { 'SCHILY.xattr.user.test': 'hello', 'SCHILY.xattr.user.other': 'v=1 2' } },
    { name: 'x/dir-attrs', type: 'directory', mode: 0o755, pax: { 'SCHILY.xattr.user.dir': 'on a dir' } },
    // PAX path (component too long for ustar) and PAX linkpath.
    { name: 'deep', type: 'directory', mode: 0o755 },
    { name: `deep/${'d'.repeat(90)}`, type: 'directory', mode: 0o755 },
    { name: LONG_DIR, type: 'directory', mode: 0o700 },
    { name: LONG_FILE, mode: 0o644, data: 'long name\n' },
    { name: `${LONG_DIR}/${'h'.repeat(110)}`, type: 'link', linkname: LONG_FILE },
    { name: 'x/long-symlink', type: 'symlink', linkname: LONG_TARGET },
    // Children added after their directory's entry: its mtime must still be the header's.
    { name: 'd/late-child', mode: 0o644, data: 'late\n' },
  ];
}

// security.capability v2 granting every capability: the value holds 0xff bytes, which must not be
// mangled as text. user.bin holds NUL, newline and '=' too.
export const CAPS = Buffer.from('0100000200000000ffffffff0000000000000000', 'hex');
CAPS.writeUInt32LE(0xffffffff, 4);
export const BIN = Buffer.from([0x00, 0x80, 0xff, 0xfe, 0x0a, 0x3d, 0x20, 0x41]);
export const GNU_LONG = `gnu/${'g'.repeat(140)}/${'n'.repeat(130)}`;
export const GNU_TARGET = `/${'k'.repeat(200)}`;

export function handBuiltLayer(): Buffer {
  return new RawTar()
    .entry({ name: 'bin/', flag: '5', mode: 0o755 })
    .pax([['SCHILY.xattr.security.capability', CAPS], ['SCHILY.xattr.user.bin', BIN]])
    .entry({ name: 'bin/ping', flag: '0', mode: 0o755 }, 'ping\n')
    // A symlink's own xattr (trusted.*, since user.* is not allowed on symlinks).
    .pax([['SCHILY.xattr.trusted.dadi', BIN]])
    .entry({ name: 'bin/sym', flag: '2', linkname: 'ping' })
    // PAX numbers beyond the ustar fields, and a fractional mtime.
    .pax([['uid', '3000000'], ['gid', '3000001'], ['mtime', '1700000000.5']])
    .entry({ name: 'bin/big-ids', flag: '0', mode: 0o644 }, 'ids\n')
    .entry({ name: 'gnu/', flag: '5', mode: 0o755, magic: 'gnu' })
    .entry({ name: `gnu/${'g'.repeat(140)}/`.slice(0, 99), flag: '5', mode: 0o755, magic: 'gnu' })
    .gnuLongName(`gnu/${'g'.repeat(140)}/`)
    .entry({ name: 'placeholder', flag: '5', mode: 0o711, magic: 'gnu' })
    .gnuLongName(GNU_LONG)
    .entry({ name: 'placeholder', flag: '0', mode: 0o644, magic: 'gnu' }, 'gnu long\n')
    .gnuLongName(`gnu/${'s'.repeat(120)}`)
    .gnuLongLink(GNU_TARGET)
    .entry({ name: 'placeholder', flag: '2', linkname: 'placeholder', magic: 'gnu' })
    .gnuLongName(`gnu/${'h'.repeat(120)}`)
    .gnuLongLink(GNU_LONG)
    .entry({ name: 'placeholder', flag: '1', linkname: 'placeholder', magic: 'gnu' })
    .end();
}


const dir = (name: string, extra: Partial<PackEntry> = {}): PackEntry => ({ name, type: 'directory', mode: 0o755, ...extra });
const file = (name: string, data: string, extra: Partial<PackEntry> = {}): PackEntry => ({ name, mode: 0o644, data, ...extra });

/** Two layers: whiteouts of a tree, a file and a symlink, an opaque directory, a hard link to a lower file, a replaced file. */
export async function whiteoutStack(): Promise<Buffer[]> {
  const lower = await packTar([
    dir('a'), file('a/keep', 'keep\n'), dir('a/gone-dir'), file('a/gone-dir/x', 'x\n'), dir('a/gone-dir/y'), file('a/gone-dir/y/z', 'z\n'),
    file('a/gone-file', 'gone\n'), { name: 'a/gone-link', type: 'symlink', linkname: 'keep' },
    dir('opq'), file('opq/old1', 'old\n'), dir('opq/olddir'), file('opq/olddir/f', 'f\n'),
    dir('base'), file('base/shared', 'shared by a hard link\n', { uid: 33, gid: 33, mode: 0o600 }),
    file('replaced', 'v1\n'),
  ]);
  const upper = await packTar([
    dir('a', { mtime: new Date(1_650_000_000_000) }),
    file('a/.wh.gone-dir', ''), file('a/.wh.gone-file', ''), file('a/.wh.gone-link', ''), file('a/.wh.never-existed', ''),
    dir('opq', { mode: 0o700 }), file('opq/new-before', 'before the marker\n'), file('opq/.wh..wh..opq', ''), file('opq/new-after', 'after\n'),
    dir('other'), { name: 'other/link-to-lower', type: 'link', linkname: 'base/shared' },
    file('replaced', 'v2, longer than before\n', { mode: 0o755 }),
  ]);
  return [lower, upper];
}

/** Two layers: file over directory, directory over file, symlink over directory, directory over directory and over a symlink. */
export function typeChangeStack(): Promise<Buffer[]> {
  return Promise.all([
    packTar([
      dir('fd'), file('fd/child', 'c\n'), dir('fd/sub'), file('fd/sub/g', 'g\n'),
      file('df', 'was a file\n'),
      dir('sd'), file('sd/child', 'c\n'),
      dir('dd', { mode: 0o755, uid: 1 }), file('dd/kept', 'kept\n'),
      { name: 'ld', type: 'symlink', linkname: 'fd' },
    ]),
    packTar([
      file('fd', 'now a file\n'),
      dir('df', { mode: 0o711 }), file('df/inside', 'i\n'),
      { name: 'sd', type: 'symlink', linkname: 'elsewhere' },
      dir('dd', { mode: 0o750, uid: 2, gid: 3 }), file('dd/added', 'a\n'),
      dir('ld'), file('ld/real', 'r\n'),
    ]),
  ]);
}
