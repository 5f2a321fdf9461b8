/**
 * A snapshotter conformance suite after containerd's snapshotter testsuite, run over gRPC against
 * any snapshots service: parent chains whose mounts (really mounted here) show each layer's files,
 * deletions and overwrites; View vs Prepare; Commit of active snapshots only; Remove of a parent
 * refused; labels round trip through Prepare, Commit and Update with field masks; Walk filters;
 * Usage; the error classes containerd expects. Keys carry a per-run prefix so the suite also runs
 * against a daemon that already holds snapshots (after a crash and restart).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { isCode, type SnapshotsClient } from '../../../src/daemon/containerd/client.ts';
import type { PbMount } from '../../../src/daemon/grpc/protos.ts';

const run = promisify(execFile);

/** Mounts containerd-style mounts on `target` (the way containerd's mount.All does for one mount). */
export async function mountAll(mounts: PbMount[], target: string): Promise<void> {
  assert.equal(mounts.length, 1, 'one mount per snapshot');
  const m = mounts[0]!;
  const opts = m.options.filter((o) => o !== 'rbind' && o !== 'bind');
  if (m.type === 'bind') {
    await run('mount', ['--rbind', m.source, target]);
    if (opts.includes('ro')) await run('mount', ['-o', 'remount,bind,ro', target]);
    return;
  }
  await run('mount', ['-t', m.type, '-o', opts.join(','), m.source, target]);
}

export async function unmount(target: string): Promise<void> {
  await run('umount', ['-R', target]).catch(() => run('umount', ['-l', target]));
}

async function expectCode(p: Promise<unknown>, code: grpc.status, what: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(isCode(err, code), `${what}: expected ${grpc.status[code]}, got ${(err as Error).message}`);
    return;
  }
  assert.fail(`${what}: expected ${grpc.status[code]}, but it succeeded`);
}

/** Runs the suite; every mount it makes is undone before it returns, also on failure. */
export async function runConformance(sn: SnapshotsClient, prefix: string): Promise<void> {
  const scratch = await mkdtemp('/tmp/dsc-');
  const mounted: string[] = [];
  const mountAt = async (mounts: PbMount[], name: string): Promise<string> => {
    const dir = join(scratch, name);
    await mkdir(dir);
    await mountAll(mounts, dir);
    mounted.push(dir);
    return dir;
  };
  const umountAt = async (dir: string): Promise<void> => {
    await unmount(dir);
    mounted.splice(mounted.indexOf(dir), 1);
  };
  const k = (s: string): string => `${prefix}-${s}`;
  try {
    // A three-layer chain: base, a child that deletes and overwrites, a view on top.
    const baseMounts = await sn.prepare(k('base-active'), '', { 'containerd.io/snapshot/test': 'base' });
    assert.deepEqual((await sn.mounts(k('base-active'))), baseMounts, 'Mounts repeats what Prepare returned');
    let dir = await mountAt(baseMounts, 'base');
    await writeFile(join(dir, 'keep'), 'base keep\n');
    await writeFile(join(dir, 'gone'), 'deleted above\n');
    await mkdir(join(dir, 'd'));
    await writeFile(join(dir, 'd', 'over'), 'old\n');
    await writeFile(join(dir, 'big'), Buffer.alloc(1 << 20, 7));
    const activeUsage = await sn.usage(k('base-active'));
    assert.ok(activeUsage.size >= 1 << 20, `usage of an active snapshot counts its files: ${activeUsage.size}`);
    assert.ok(activeUsage.inodes >= 5, `inodes: ${activeUsage.inodes}`);
    await umountAt(dir);
    const st = await sn.stat(k('base-active'));
    assert.equal(st.kind, 'ACTIVE');
    assert.equal(st.parent, '');
    assert.equal(st.labels['containerd.io/snapshot/test'], 'base');

    await sn.commit(k('base'), k('base-active'), { 'containerd.io/snapshot/committed': 'yes' });
    await expectCode(sn.stat(k('base-active')), grpc.status.NOT_FOUND, 'the active key is gone after Commit');
    const base = await sn.stat(k('base'));
    assert.equal(base.kind, 'COMMITTED');
    assert.equal(base.labels['containerd.io/snapshot/test'], 'base', 'labels survive Commit');
    assert.equal(base.labels['containerd.io/snapshot/committed'], 'yes', 'Commit adds labels');
    assert.ok((await sn.usage(k('base'))).size >= activeUsage.size, 'usage is kept at Commit');

    dir = await mountAt(await sn.prepare(k('child-active'), k('base')), 'child');
    assert.equal(await readFile(join(dir, 'keep'), 'utf8'), 'base keep\n', 'a child sees its parent');
    await rm(join(dir, 'gone'));
    await writeFile(join(dir, 'd', 'over'), 'new\n');
    await writeFile(join(dir, 'added'), 'child\n');
    await umountAt(dir);
    await sn.commit(k('child'), k('child-active'));
    assert.equal((await sn.stat(k('child'))).parent, k('base'));

    const viewMounts = await sn.view(k('view'), k('child'));
    assert.equal((await sn.stat(k('view'))).kind, 'VIEW');
    dir = await mountAt(viewMounts, 'view');
    assert.deepEqual((await readdir(dir)).sort(), ['added', 'big', 'd', 'keep'], 'the deletion holds through the chain');
    assert.equal(await readFile(join(dir, 'd', 'over'), 'utf8'), 'new\n', 'the top change wins');
    await assert.rejects(writeFile(join(dir, 'x'), 'x'), /EROFS|read-only/i, 'a view is read-only');
    await umountAt(dir);

    // A child of the child as an active snapshot sees all three layers, writes to its own upper.
    dir = await mountAt(await sn.prepare(k('top-active'), k('child')), 'top');
    assert.equal(await readFile(join(dir, 'added'), 'utf8'), 'child\n');
    await writeFile(join(dir, 'top'), 'top\n');
    await umountAt(dir);
    assert.ok((await sn.usage(k('top-active'))).size > 0);

    // Errors containerd relies on.
    await expectCode(sn.prepare(k('top-active'), k('child')), grpc.status.ALREADY_EXISTS, 'Prepare of an existing key');
    await expectCode(sn.prepare(k('orphan'), k('no-such-parent')), grpc.status.NOT_FOUND, 'Prepare on a missing parent');
    await expectCode(sn.prepare(k('on-active'), k('top-active')), grpc.status.INVALID_ARGUMENT, 'Prepare on an active parent');
    await expectCode(sn.commit(k('view-c'), k('view')), grpc.status.FAILED_PRECONDITION, 'Commit of a view');
    await expectCode(sn.commit(k('base-again'), k('base')), grpc.status.FAILED_PRECONDITION, 'Commit of a committed snapshot');
    await expectCode(sn.commit(k('x'), k('no-such-key')), grpc.status.NOT_FOUND, 'Commit of a missing key');
    await expectCode(sn.commit(k('child'), k('top-active')), grpc.status.ALREADY_EXISTS, 'Commit onto an existing name');
    await expectCode(sn.remove(k('child')), grpc.status.FAILED_PRECONDITION, 'Remove of a parent with children');
    await expectCode(sn.remove(k('no-such-key')), grpc.status.NOT_FOUND, 'Remove of a missing key');
    await expectCode(sn.stat(k('no-such-key')), grpc.status.NOT_FOUND, 'Stat of a missing key');

    // Labels: Update with and without field masks; only labels can change.
    const before = await sn.stat(k('top-active'));
    await sn.update({ name: k('top-active'), labels: { a: '1', b: '2' } });
    let info = await sn.update({ name: k('top-active'), labels: { a: 'one', c: '3' } }, ['labels.a', 'labels.b']);
    assert.deepEqual(info.labels, { a: 'one' }, 'a masked Update sets the named labels and deletes those absent');
    info = await sn.update({ name: k('top-active'), labels: { z: '26' } }, ['labels']);
    assert.deepEqual(info.labels, { z: '26' }, 'the labels mask replaces every label');
    assert.deepEqual((await sn.stat(k('top-active'))).labels, { z: '26' }, 'Update is stored');
    assert.ok(Number(info.updated_at!.seconds) * 1000 + info.updated_at!.nanos / 1e6 >= Number(before.updated_at!.seconds) * 1000, 'updated_at moves on');
    await expectCode(sn.update({ name: k('top-active'), labels: {} }, ['parent']), grpc.status.INVALID_ARGUMENT, 'Update of a field other than labels');
    await expectCode(sn.update({ name: k('no-such-key'), labels: {} }), grpc.status.NOT_FOUND, 'Update of a missing key');

    // Walk: filters select by kind, name, parent and labels; several filters are alternatives.
    const names = async (filters: string[]): Promise<string[]> =>
      (await sn.list(filters)).map((i) => i.name).filter((n) => n.startsWith(`${prefix}-`)).sort();
    assert.deepEqual(await names([]), [k('base'), k('child'), k('top-active'), k('view')].sort(), 'Walk lists every snapshot');
    assert.deepEqual(await names(['kind==committed']), [k('base'), k('child')].sort());
    assert.deepEqual(await names(['kind==view']), [k('view')]);
    assert.deepEqual(await names([`parent==${k('child')}`]), [k('top-active'), k('view')].sort());
    assert.deepEqual(await names([`parent=="${k('child')}",kind==active`]), [k('top-active')]);
    assert.deepEqual(await names(['labels.z==26']), [k('top-active')]);
    assert.deepEqual(await names(['labels."containerd.io/snapshot/test"==base']), [k('base')]);
    assert.deepEqual(await names(['labels."containerd.io/snapshot/committed"']), [k('base')], 'a bare field tests presence');
    assert.deepEqual(await names([`name~=/${prefix}-(base|view)$/`]), [k('base'), k('view')].sort());
    assert.deepEqual(await names(['kind==view', 'labels.z==26']), [k('top-active'), k('view')].sort(), 'filters are alternatives');
    assert.deepEqual(await names([`kind!=committed,name~=^${prefix}-`]), [k('top-active'), k('view')].sort());
    await expectCode(sn.list(['labels.="x']), grpc.status.INVALID_ARGUMENT, 'a malformed filter');

    // Remove top-down; then the chain is gone and nothing of it is listed.
    await sn.remove(k('top-active'));
    await sn.remove(k('view'));
    await sn.remove(k('child'));
    await sn.remove(k('base'));
    assert.deepEqual(await names([]), [], 'every snapshot of the run is removed');
    await sn.cleanup();
  } finally {
    for (const d of mounted.reverse()) await unmount(d);
    await rm(scratch, { recursive: true, force: true });
  }
}
