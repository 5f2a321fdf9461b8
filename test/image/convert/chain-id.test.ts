/** chainID per the OCI image spec and the overlaybd layer UUID derived from it (formats.md §2.4). */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { chainIdToUuid, chainIds } from '../../../src/image/chain-id.ts';

const HELLO = 'sha256:01bb4fce3eb1b56b05adf99504dafd31907a5aadac736e36b27595c8b92f07f1';
const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'0123456789abcdef'.repeat(4)}`;

/** sha256 by an independent tool, so the test does not repeat the code's own formula. */
function sha256sum(text: string): string {
  return `sha256:${execFileSync('sha256sum', { input: text, encoding: 'utf8' }).split(' ')[0]}`;
}

test('the hello-world diffID gives the UUID stored by the reference convertor', () => {
  assert.equal(chainIdToUuid(HELLO), '01BB4FCE-3EB1-B56B-05AD-F99504DAFD31');
});

test('chainIDs: the first is the diffID, each next hashes "<parent chainID> <diffID>"', () => {
  const ids = chainIds([A, B, C]);
  assert.equal(ids[0], A);
  assert.equal(ids[1], sha256sum(`${A} ${B}`));
  assert.equal(ids[2], sha256sum(`${ids[1]} ${C}`));
  assert.equal(chainIdToUuid(ids[1]!), ids[1]!.slice(7, 15).toUpperCase() + '-' + ids[1]!.slice(15, 19).toUpperCase() + '-'
    + ids[1]!.slice(19, 23).toUpperCase() + '-' + ids[1]!.slice(23, 27).toUpperCase() + '-' + ids[1]!.slice(27, 39).toUpperCase());
  assert.deepEqual(chainIds([]), []);
});

test('malformed digests are refused with the position named', () => {
  assert.throws(() => chainIds([A, 'sha256:xyz']), /diff_ids\[1\]/);
  assert.throws(() => chainIds([A.toUpperCase()]), /diff_ids\[0\]/);
  assert.throws(() => chainIdToUuid('md5:abc'), /chainID/);
});
