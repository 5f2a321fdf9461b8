/**
 * `dadi pull` refuses what the dadi snapshotter cannot take lazily, before touching containerd:
 * an ordinary OCI image (naming the way to pull it instead) and a config whose diff_ids do not
 * match the layers. (The lazy pull itself is proven with containerd in
 * test/daemon/snapshotter/containerd.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildObdImage, pushObdImage } from '../image/remote/fixture.ts';
import { runDadi, vector } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';

test('dadi pull of an ordinary image says it is not a dadi image and how to pull it', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'plain/app', 'v1', await buildObdImage([vector('ext4-L1.lsmt')], { plain: true }));
  const r = await runDadi(['pull', '--address', '/nonexistent/containerd.sock', `${reg.hostPort}/plain/app:v1`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /plain\/app:v1 is not a dadi\/overlaybd image: layer 0 \(sha256:[0-9a-f]{64}\) has no containerd\.io\/snapshot\/overlaybd\/blob-digest annotation; pull it with ctr image pull --snapshotter dadi/);
});

test('dadi pull names an unreachable containerd socket', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'obd/app', 'v1', await buildObdImage([vector('ext4-L1.lsmt')]));
  const r = await runDadi(['pull', '--address', '/nonexistent/containerd.sock', `${reg.hostPort}/obd/app:v1`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/containerd\.sock|No connection established|UNAVAILABLE|Leases\.Create/i);
});
