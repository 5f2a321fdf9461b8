/**
 * The whole-layer prefetch selector: `top-first` / `bottom-first` order every layer, a list picks
 * layers by position, index (negative from the top) or digest prefix in the order given, items
 * an image lacks are left out, off is '', none or off; mistakes are named. The plan covers each
 * listed layer whole in fixed-size requests, layer after layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerOrder, parseLayerSelector, planLayerPrefetch } from '../../../src/daemon/snapshotter/layer-prefetch.ts';

const D = ['sha256:' + 'a'.repeat(64), undefined, 'sha256:' + 'bc'.repeat(32), 'sha256:' + 'd'.repeat(64)];

test('layer selectors order the layers as named and leave out what the image lacks', () => {
  const order = (text: string): number[] | undefined => {
    const sel = parseLayerSelector(text);
    return sel && layerOrder(sel, D);
  };
  assert.deepEqual(order('top-first'), [3, 2, 1, 0]);
  assert.deepEqual(order('all'), [3, 2, 1, 0]);
  assert.deepEqual(order('Bottom-First'), [0, 1, 2, 3]);
  assert.deepEqual(order('top,bottom'), [3, 0]);
  assert.deepEqual(order('-2, 1, top, -2'), [2, 1, 3], 'negative indices count from the top; repeats once');
  assert.deepEqual(order(`bcbcbcbc,sha256:${'a'.repeat(64)}`), [2, 0], 'digests, whole or by prefix');
  assert.deepEqual(order('7,-9,eeeeeeee'), [], 'items the image lacks are left out');
  for (const off of ['', 'none', 'off', ' NONE ']) assert.equal(parseLayerSelector(off), undefined);
  assert.throws(() => parseLayerSelector('middle'), /"middle" is not top, bottom, a layer index or a layer digest/);
  assert.throws(() => parseLayerSelector('abc'), /"abc" is not/, 'a digest prefix has at least 8 hex digits');
  assert.throws(() => parseLayerSelector(','), /names no layer/);
});

test('the plan covers each listed layer whole, in fixed-size requests, layer after layer', () => {
  const plan = planLayerPrefetch([2, 0], [10, 99, 9], 4);
  assert.deepEqual(plan, [
    { layer: 2, offset: 0, length: 4 }, { layer: 2, offset: 4, length: 4 }, { layer: 2, offset: 8, length: 1 },
    { layer: 0, offset: 0, length: 4 }, { layer: 0, offset: 4, length: 4 }, { layer: 0, offset: 8, length: 2 },
  ]);
  assert.equal(planLayerPrefetch([0], [8 << 20]).length, 2, '4 MiB requests by default');
});
