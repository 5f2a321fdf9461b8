/**
 * `dadi record-trace`: what overlaybd's `ctr record-trace` does (formats.md §7.8), through the
 * dadi snapshotter. IMAGE is pulled lazily into containerd (`dadi pull`), run once with the
 * record-trace snapshot labels pointing at an empty trace file (containerd's own `ctr run`
 * creates the container and task: the containerd client here speaks the snapshot, content,
 * image and lease APIs, not the runtime's), until its command exits or the timeout passes; the
 * lock file is then removed so the snapshotter writes the trace, and NEW_IMAGE = IMAGE plus an
 * acceleration layer holding it is pushed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage } from '../../errors.ts';
import { pushWithAccelerationLayer } from '../../image/trace/accel-layer.ts';
import { decodeTrace } from '../../image/trace/format.ts';
import { RegistryClient } from '../../registry/client.ts';
import { parseReference, referenceTarget } from '../../registry/reference.ts';
import { pullImage } from './pull.ts';

export interface RecordTraceOptions {
  address: string;
  namespace: string;
  snapshotter: string;
  /** Stop the container after this many seconds (default 60). */
  timeoutSec: number;
  insecure?: boolean;
  /** The command to run instead of the image's own. */
  command?: string[];
  /** The `ctr` binary (containerd's CLI). */
  ctr?: string;
  progress?: (line: string) => void;
}

export interface RecordTraceResult { records: number; tracedBytes: number; manifestDigest: string; timedOut: boolean }

const RECORD = 'containerd.io/snapshot/overlaybd/record-trace';
const RECORD_PATH = 'containerd.io/snapshot/overlaybd/record-trace-path';

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

function ctrCall(o: RecordTraceOptions, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(o.ctr ?? 'ctr', ['--address', o.address, '--namespace', o.namespace, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/**
 * `ctr run` of container `id`; after `timeoutMs` its task is killed (a signal to `ctr run` is
 * forwarded to the container's init, which ignores SIGTERM when it has no handler), which ends it.
 */
async function runFor(o: RecordTraceOptions, id: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string; timedOut: boolean }> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void ctrCall(o, ['tasks', 'kill', '-s', 'KILL', id]);
  }, timeoutMs);
  try {
    const r = await ctrCall(o, args);
    return { ...r, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

export async function recordTrace(image: string, newImage: string, o: RecordTraceOptions): Promise<RecordTraceResult> {
  const say = o.progress ?? (() => {});
  const src = parseReference(image);
  const dst = parseReference(newImage);
  await pullImage(image, { address: o.address, namespace: o.namespace, snapshotter: o.snapshotter, ...(o.insecure ? { insecure: true } : {}), progress: say });
  const dir = await mkdtemp(join(tmpdir(), 'dadi-record-trace-'));
  const trace = join(dir, 'trace');
  const id = `record-trace-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(trace, '');
    say(`running ${image} as container ${id} (at most ${o.timeoutSec} s), recording to ${trace}`);
    const run = await runFor(o, id, ['run', '--rm', '--snapshotter', o.snapshotter,
      '--snapshotter-label', `${RECORD}=yes`, '--snapshotter-label', `${RECORD_PATH}=${trace}`, image, id, ...(o.command ?? [])], o.timeoutSec * 1000);
    const timedOut = run.timedOut;
    if (timedOut) {
      say(`timeout: container ${id} stopped after ${o.timeoutSec} s`);
      // `ctr run --rm` removes the container when its task ends; make sure of it.
      await ctrCall(o, ['tasks', 'rm', '-f', id]);
      await ctrCall(o, ['containers', 'rm', id]);
    } else if (run.code !== 0 && !(await exists(`${trace}.lock`))) {
      throw new Error(`ctr run ${image} failed (exit ${run.code}) before recording started: ${run.out.trim()}`);
    }
    // As with overlaybd: removing the lock file ends the recording and the trace is written.
    await rm(`${trace}.lock`, { force: true });
    const deadline = Date.now() + 30_000;
    while (!(await exists(`${trace}.ok`))) {
      if (Date.now() > deadline) throw new Error(`the snapshotter did not write the trace ${trace} (no ${trace}.ok after 30 s); is ${o.snapshotter} the dadi snapshotter?`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const bytes = await readFile(trace);
    const records = decodeTrace(bytes, trace);
    say(`trace: ${records.length} records, ${records.reduce((n, r) => n + r.length, 0)} bytes`);
    const client = new RegistryClient(o.insecure ? { insecure: true } : {});
    try {
      const manifestDigest = await pushWithAccelerationLayer(client,
        { registry: src.registry, repository: src.repository, reference: referenceTarget(src) },
        { registry: dst.registry, repository: dst.repository, reference: referenceTarget(dst) }, bytes);
      say(`pushed ${newImage} (${manifestDigest})`);
      return { records: records.length, tracedBytes: records.reduce((n, r) => n + r.length, 0), manifestDigest, timedOut };
    } catch (err) {
      throw new Error(`pushing ${newImage}: ${errorMessage(err)}`, { cause: err });
    } finally {
      await client.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
