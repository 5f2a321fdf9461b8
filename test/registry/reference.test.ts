import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReference, registryBaseUrl, formatReference } from '../../src/registry/reference.ts';
import { InvalidReferenceError } from '../../src/registry/errors.ts';

const D = `sha256:${'ab'.repeat(32)}`;

test('references: registry, repository, tag and digest, with Docker defaults', () => {
  const cases: [string, object][] = [
    ['ubuntu', { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' }],
    ['ubuntu:22.04', { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' }],
    ['user/app', { registry: 'docker.io', repository: 'user/app', tag: 'latest' }],
    ['docker.io/ubuntu', { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' }],
    ['index.docker.io/library/ubuntu:1', { registry: 'docker.io', repository: 'library/ubuntu', tag: '1' }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['localhost:5000/a/b/c:v1', { registry: 'localhost:5000', repository: 'a/b/c', tag: 'v1' }],
    ['127.0.0.1:5000/x', { registry: '127.0.0.1:5000', repository: 'x', tag: 'latest' }],
    [`ghcr.io/org/img@${D}`, { registry: 'ghcr.io', repository: 'org/img', digest: D }],
    [`ghcr.io/org/img:v2@${D}`, { registry: 'ghcr.io', repository: 'org/img', tag: 'v2', digest: D }],
    ['[::1]:5000/app:t', { registry: '[::1]:5000', repository: 'app', tag: 't' }],
    ['docker://quay.io/a/b', { registry: 'quay.io', repository: 'a/b', tag: 'latest' }],
  ];
  for (const [input, want] of cases) assert.deepEqual(parseReference(input), want, input);
  assert.equal(formatReference(parseReference(`ghcr.io/org/img:v2@${D}`)), `ghcr.io/org/img:v2@${D}`);
});

test('references: clear errors for malformed input', () => {
  for (const [input, why] of [
    ['', /empty/], ['Upper/app', /not a valid repository name/], ['host:5000/app:bad tag', /not a valid tag/],
    ['app@sha256:123', /is not a digest/], ['a//b', /not a valid repository name/], ['localhost:5000/../etc', /not a valid repository/],
    ['x/y:' + 't'.repeat(129), /not a valid tag/],
  ] as const) {
    assert.throws(() => parseReference(input), (err: unknown) => {
      assert.ok(err instanceof InvalidReferenceError);
      assert.match(err.message, new RegExp(`^invalid image reference "${input.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}": `));
      assert.match(err.message, why);
      return true;
    });
  }
});

test('base URL: https by default, http for loopback or --insecure, registry-1 for docker.io', () => {
  assert.equal(registryBaseUrl('docker.io'), 'https://registry-1.docker.io');
  assert.equal(registryBaseUrl('ghcr.io'), 'https://ghcr.io');
  assert.equal(registryBaseUrl('localhost:5000'), 'http://localhost:5000');
  assert.equal(registryBaseUrl('127.0.0.1:5000'), 'http://127.0.0.1:5000');
  assert.equal(registryBaseUrl('127.1.2.3'), 'http://127.1.2.3');
  assert.equal(registryBaseUrl('[::1]:5000'), 'http://[::1]:5000');
  assert.equal(registryBaseUrl('reg.lan:5000', { insecure: true }), 'http://reg.lan:5000');
});
