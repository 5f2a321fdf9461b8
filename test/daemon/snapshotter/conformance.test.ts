/**
 * dadi's snapshotter passes the conformance suite over gRPC, on a real daemon process: chains of
 * overlayfs snapshots mounted for real, the error classes containerd relies on, labels, Walk
 * filters and Usage; afterwards nothing is left mounted or attached under its root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireSystem } from '../../helpers/env.ts';
import { leftovers, startSnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { runConformance } from './conformance.ts';

test('the snapshotter passes the conformance suite over gRPC and leaves nothing mounted', async (t) => {
  if (!requireSystem(t, { commands: ['mount', 'umount'], root: true })) return;
  const d = await startSnapshotterDaemon(t);
  await runConformance(d.client, 'c1');
  // Twice on the same daemon: names are reusable after Remove.
  await runConformance(d.client, 'c1');
  assert.deepEqual(await leftovers(d.root), []);
});
