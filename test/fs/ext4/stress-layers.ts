/**
 * A generated stress image of three layers for the ext4 writer and conversion: thousands of files
 * in one directory, a deep tree, files of every size class up to one that crosses block groups,
 * a mostly-zero (sparse-like) file, hard links and symlinks, then deletions across layers
 * (whiteouts of single files, of half a big directory, of a whole tree, an opaque directory) and a
 * file written into the freed holes, whose extent tree needs two index levels.
 */
import { createHash } from 'node:crypto';
import { packTar, type PackEntry } from '../../image/apply/tar-build.ts';

const dir = (name: string, extra: Partial<PackEntry> = {}): PackEntry => ({ name, type: 'directory', mode: 0o755, ...extra });
const file = (name: string, data: string | Buffer, extra: Partial<PackEntry> = {}): PackEntry => ({ name, mode: 0o644, data, ...extra });

function bytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, k = 0; i < n; i += 32, k++) createHash('sha256').update(`${seed}/${k}`).digest().copy(out, i);
  return out;
}

/** Mostly zeros with a marker every MiB: a file a sparse-aware tar would store as holes. */
function sparseLike(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let at = 0; at < n; at += 1 << 20) out.write(`marker at ${at}\n`, at);
  return out;
}

export const MANY = 3000;
export const FRAG = 2900;
/** Names of many/ whited out in layer 2 (every twentieth). */
export const WHITED_OUT = MANY / 20;
export const HUGE = 130 * 2 ** 20;
/** Each 1-block file of frag/ emptied in layer 2 leaves a hole the filler of layer 3 goes through. */
export const FILLER = (FRAG / 2 + 64) * 4096;

export async function stressLayers(): Promise<Buffer[]> {
  const deep: PackEntry[] = [];
  let path = 'deep';
  for (let i = 0; i < 40; i++) { deep.push(dir(path)); path += `/level-${i}`; }
  deep.push(file(`${path}/bottom`, 'the bottom\n'));
  const sizes = [0, 1, 59, 60, 4095, 4096, 4097, 8191, 65539, (1 << 20) + 7, 5 * (1 << 20) + 1];
  const l1: PackEntry[] = [
    dir('many'),
    ...Array.from({ length: MANY }, (_, i) => file(`many/${'n'.repeat(i % 200)}-${i}`, `file ${i}\n`)),
    ...deep,
    dir('sizes'),
    ...sizes.map((n) => file(`sizes/${n}`, bytes(n, `size ${n}`))),
    file('sizes/huge', sparseLike(HUGE)),
    dir('frag'),
    ...Array.from({ length: FRAG }, (_, i) => file(`frag/${i}`, bytes(4096, `frag ${i}`))),
    dir('links'),
    { name: 'links/hard-to-size', type: 'link', linkname: 'sizes/65539' },
    { name: 'links/short', type: 'symlink', linkname: '../sizes/1' },
    { name: 'links/long', type: 'symlink', linkname: `../${'x'.repeat(200)}/target` },
    dir('opaque'), file('opaque/old', 'old\n'), dir('opaque/sub'), file('opaque/sub/old', 'old\n'),
  ];
  const l2: PackEntry[] = [
    dir('many'),
    ...Array.from({ length: WHITED_OUT }, (_, i) => file(`many/.wh.${'n'.repeat((20 * i) % 200)}-${20 * i}`, '')),
    ...Array.from({ length: 200 }, (_, i) => file(`many/added-in-layer-2-${i}`, `added ${i}\n`)),
    dir('frag'),
    // Emptied, not whited out (GNU tar's reference pass runs processes per whiteout): every other block freed.
    ...Array.from({ length: FRAG / 2 }, (_, i) => file(`frag/${2 * i}`, '')),
    dir('sizes'),
    file('sizes/4097', bytes(10000, 'replaced')),
    dir('links'),
    { name: 'links/hard-to-lower', type: 'link', linkname: 'sizes/5242881' },
    dir('opaque'), file('opaque/.wh..wh..opq', ''), file('opaque/new', 'new\n'),
  ];
  const l3: PackEntry[] = [
    file('.wh.deep', ''),
    dir('sizes'),
    file('sizes/filler', bytes(FILLER, 'filler')),
    file('sizes/.wh.0', ''),
  ];
  return [await packTar(l1), await packTar(l2), await packTar(l3)];
}
