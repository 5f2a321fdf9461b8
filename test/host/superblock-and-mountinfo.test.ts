import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fsTypeFromSuperblock } from '../../src/host/fs-type.ts';
import { mountOptions } from '../../src/host/mount-fs.ts';
import { parseMountInfo } from '../../src/host/mount-table.ts';

test('ext4 and EROFS are told apart by their superblock magic; anything else is unknown', () => {
  const head = new Uint8Array(2048);
  assert.equal(fsTypeFromSuperblock(head), undefined);
  head[1080] = 0x53; head[1081] = 0xef;
  assert.equal(fsTypeFromSuperblock(head), 'ext4');
  const erofs = new Uint8Array(2048);
  erofs.set([0xe2, 0xe1, 0xf5, 0xe0], 1024);
  assert.equal(fsTypeFromSuperblock(erofs), 'erofs');
  // Byte order matters: the magic is little-endian.
  const swapped = new Uint8Array(2048);
  swapped[1080] = 0xef; swapped[1081] = 0x53;
  assert.equal(fsTypeFromSuperblock(swapped), undefined);
  // A device shorter than a superblock holds nothing we know.
  assert.equal(fsTypeFromSuperblock(head.subarray(0, 1024)), undefined);
});

test('mount options follow overlaybd: writable ext4 gets discard, EROFS is always read-only', () => {
  assert.deepEqual(mountOptions('ext4', { readOnly: false }), ['rw', 'discard']);
  assert.deepEqual(mountOptions('ext4', { readOnly: true }), ['ro']);
  assert.deepEqual(mountOptions('erofs', { readOnly: false }), ['ro']);
  assert.deepEqual(mountOptions('ext4', { readOnly: true, extraOptions: ['noatime'] }), ['ro', 'noatime']);
});

test('mountinfo lines are parsed with optional fields and octal escapes', () => {
  const text = [
    '36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
    '40 36 7:3 / /tmp/with\\040space rw,relatime - ext4 /dev/loop3 rw,discard',
    '41 36 0:55 / /run/dadi/work/ab/fuse rw,nosuid,nodev,relatime shared:7 master:3 - fuse nbdfuse rw,user_id=0',
    '',
  ].join('\n');
  assert.deepEqual(parseMountInfo(text), [
    { mountPoint: '/mnt/parent', fsType: 'ext3', source: '/dev/root' },
    { mountPoint: '/tmp/with space', fsType: 'ext4', source: '/dev/loop3' },
    { mountPoint: '/run/dadi/work/ab/fuse', fsType: 'fuse', source: 'nbdfuse' },
  ]);
});
