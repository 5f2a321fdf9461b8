/**
 * containerd's filter syntax as Walk receives it: the forms containerd itself sends (quoted label
 * keys, unquoted digests with colons, quoted parents), presence, regexps, alternatives, and
 * syntax errors that name the filter and position.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FilterSyntaxError, parseFilters, type FieldLookup } from '../../../src/daemon/snapshotter/filters.ts';

const info = { name: 'ns/12/sha256:abc', parent: 'ns/11/p', kind: 'committed', labels: { 'containerd.io/snapshot.ref': 'sha256:abc', a: 'x,y', e: '' } as Record<string, string> };
const lookup: FieldLookup = (p) => (p[0] === 'labels' ? info.labels[p.slice(1).join('.')] : p.length === 1 ? (info as unknown as Record<string, string>)[p[0]!] : undefined);
const match = (...f: string[]): boolean => parseFilters(f).match(lookup);

test('the filter containerd sends when a remote snapshotter answers AlreadyExists matches', () => {
  assert.ok(match('labels."containerd.io/snapshot.ref"==sha256:abc,parent=="ns/11/p"'));
  assert.ok(!match('labels."containerd.io/snapshot.ref"==sha256:abd,parent=="ns/11/p"'));
  assert.ok(!match('labels."containerd.io/snapshot.ref"==sha256:abc,parent=="ns/11/q"'));
});

test('operators, presence, regexps, quoting and alternatives', () => {
  assert.ok(match(''), 'an empty filter matches everything');
  assert.ok(match(), 'no filters match everything');
  assert.ok(match('kind==committed'));
  assert.ok(match('kind!=active'));
  assert.ok(match('labels.e'), 'presence of an empty label');
  assert.ok(!match('labels.missing'));
  assert.ok(match('labels.a=="x,y"'), 'a quoted value may hold a comma');
  assert.ok(match('name~=^ns/12/'), 'a bare regexp');
  assert.ok(match('name~=/sha256:a.c$/'), 'a /regexp/');
  assert.ok(!match('name~=/^sha/'));
  assert.ok(match('kind==view', 'kind==committed'), 'alternatives: any may hold');
  assert.ok(!match('kind==committed,kind==view'), 'selectors of one filter: all must hold');
  assert.ok(match(' kind == committed , labels.a == "x,y" '), 'spaces around tokens');
  assert.ok(!match('unknown==x'), 'an unknown field is absent');
});

test('syntax errors name the filter and the position', () => {
  assert.throws(() => parseFilters(['labels.="x']), (err: unknown) => err instanceof FilterSyntaxError && /position 7/.test((err as Error).message));
  assert.throws(() => parseFilters(['name=="open']), /unterminated string/);
  assert.throws(() => parseFilters(['name~=/(/']), /bad regexp/);
  assert.throws(() => parseFilters(['kind==a b']), /unexpected "b"/);
});
