import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_FILE_LIST_BYTES, parseFileList } from '../../../src/image/trace/file-list.ts';
import { encodeTrace, isTraceFile } from '../../../src/image/trace/format.ts';

test('a prefetch list is absolute paths, one a line; blank lines and comments are skipped', () => {
  assert.deepEqual(parseFileList('/usr/bin/python3\n\n# libs\n/usr/lib/\n  /etc/*  \n'), ['/usr/bin/python3', '/usr/lib/', '/etc/*']);
});

test('bad prefetch lists are refused naming the problem', () => {
  assert.throws(() => parseFileList('usr/bin/python3\n', 'L'), /L: "usr\/bin\/python3" is not an absolute path/);
  assert.throws(() => parseFileList(`/${'a'.repeat(MAX_FILE_LIST_BYTES)}\n`, 'L'), /more than a file list may hold/);
});

test('a trace and a list are told apart by the trace magic (formats.md §7.8)', () => {
  assert.ok(isTraceFile(encodeTrace([])));
  assert.ok(!isTraceFile(Buffer.from('/usr/lib/\n')));
});
