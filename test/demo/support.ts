/** What the demo tests share: prerequisites, sizes, event parsing and the "nothing left" check. */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { generateDemoContent } from '../../src/demo/content.ts';
import type { DemoEvent } from '../../src/demo/events.ts';
import { tempDir } from '../helpers/env.ts';

export const PRIVILEGED = { root: true, commands: ['nbdfuse', 'mkfs.ext4', 'losetup', 'fusermount3', 'mount'], paths: ['/dev/fuse'] };
// Small, since CI time depends on it, yet large enough that the bulk of layer 0 is clearly not
// fetched (the block cache reads ahead up to 1 MiB on a sequential stream).
export const SIZE = ['--binary-size', '4M'];
// Where the fetch ratio is not checked.
export const SMALL = ['--binary-size', '1M'];

export function events(stdout: Buffer): DemoEvent[] {
  return stdout.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as DemoEvent);
}

export function find<S extends DemoEvent['step']>(evs: DemoEvent[], step: S): Extract<DemoEvent, { step: S }> {
  const e = evs.find((x) => x.step === step);
  assert.ok(e, `no ${step} step in ${JSON.stringify(evs.map((x) => x.step))}`);
  return e as Extract<DemoEvent, { step: S }>;
}

export async function firstLineOfReadFile(): Promise<string> {
  const c = await generateDemoContent(2);
  return c.readContent.toString('utf8').split('\n')[0]!;
}

/** Asserts that nothing mentioning `dir` is mounted, attached, running or left inside it. */
export async function assertNothingLeft(dir: string, opts: { keptDir?: string } = {}): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  assert.deepEqual(mountinfo.split('\n').filter((l) => l.includes(dir)), [], 'mounts left behind');
  const loops: string[] = [];
  for (const n of (await readdir('/sys/block')).filter((x) => x.startsWith('loop'))) {
    const b = await readFile(`/sys/block/${n}/loop/backing_file`, 'utf8').catch(() => '');
    if (b.includes(dir)) loops.push(`${n}: ${b.trim()}`);
  }
  assert.deepEqual(loops, [], 'loop devices left behind');
  const procs: string[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    if (cmd.includes(dir)) procs.push(`${pid}: ${cmd}`);
  }
  assert.deepEqual(procs, [], 'processes (nbdfuse, dadi serve) left behind');
  // tsx keeps its compile cache in TMPDIR/tsx-UID: the loader's, not the demo's.
  const left = (await readdir(dir)).filter((n) => !/^tsx-\d+$/.test(n)).map((n) => join(dir, n)).filter((p) => p !== opts.keptDir);
  assert.deepEqual(left, [], 'temporary files left behind');
}

export async function demoTmp(t: TestContext): Promise<string> {
  return tempDir(t, 'dadi-demo-test-');
}
