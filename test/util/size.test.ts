import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSize } from '../../src/util/size.ts';

test('parseSize accepts plain bytes and binary unit suffixes', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('4K'), 4096);
  assert.equal(parseSize('64m'), 64 * 2 ** 20);
  assert.equal(parseSize('10G'), 10 * 2 ** 30);
  assert.equal(parseSize('1GiB'), 2 ** 30);
});

test('parseSize rejects text that is not a size, naming it', () => {
  assert.throws(() => parseSize('12Q'), /not a size: "12Q"/);
  assert.throws(() => parseSize(''), /not a size/);
});
