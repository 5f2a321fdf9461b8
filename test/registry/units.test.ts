/** Small pure pieces of the registry code: challenges, docker config matching, platforms, ranges, listen addresses. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseChallenges } from '../../src/registry/auth.ts';
import { credentialsFromConfig, candidateKeys } from '../../src/registry/credentials.ts';
import { selectPlatform, parsePlatform } from '../../src/registry/manifests.ts';
import { parseContentRange, parseRetryAfter } from '../../src/registry/transport.ts';
import { parseRange } from '../../src/registry/server/blobs.ts';
import { parseAuthOption } from '../../src/registry/server/auth.ts';
import { parseListen } from '../../src/cli/commands/registry.ts';
import type { Descriptor } from '../../src/registry/oci.ts';

test('WWW-Authenticate challenges: quoted values with commas, several schemes', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm", Bearer realm=http://x/token,service=s'), [
    { scheme: 'basic', params: { realm: 'Registry Realm' } },
    { scheme: 'bearer', params: { realm: 'http://x/token', service: 's' } },
  ]);
  assert.deepEqual(parseChallenges('Bearer realm="a\\"b"'), [{ scheme: 'bearer', params: { realm: 'a"b' } }]);
  assert.deepEqual(parseChallenges(''), []);
});

test('docker config: keys match by host and host/path prefix, first entry in file order wins', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  assert.deepEqual(candidateKeys('reg:5000', 'ns/sub/repo'), ['reg:5000', 'reg:5000/ns', 'reg:5000/ns/sub', 'reg:5000/ns/sub/repo']);
  const config = { auths: {
    'other:5000': { auth: b64('o:o') },
    'https://reg:5000/ns/sub': { username: 'sub', password: 'p1' },
    'reg:5000': { auth: b64('host:p:with:colons') },
    'https://index.docker.io/v1/': { auth: b64('hub:h') },
  } };
  assert.deepEqual(credentialsFromConfig(config, 'reg:5000', 'ns/sub/repo'), { username: 'sub', password: 'p1' });
  assert.deepEqual(credentialsFromConfig(config, 'reg:5000', 'ns/other'), { username: 'host', password: 'p:with:colons' });
  assert.deepEqual(credentialsFromConfig(config, 'docker.io', 'library/ubuntu'), { username: 'hub', password: 'h' });
  assert.equal(credentialsFromConfig(config, 'unknown:1', 'x'), undefined);
  assert.equal(credentialsFromConfig({ auths: { 'reg:5000': { auth: '' } } }, 'reg:5000', 'x'), undefined);
  assert.equal(credentialsFromConfig(null, 'reg:5000'), undefined);
});

test('platform selection: os/arch, variants, arm64 defaulting to v8', () => {
  const d = (platform: Descriptor['platform'], n: number): Descriptor => ({ mediaType: 'm', digest: `sha256:${String(n).repeat(64)}`, size: n, ...(platform ? { platform } : {}) });
  const list = [d({ os: 'linux', architecture: 'arm', variant: 'v6' }, 1), d({ os: 'linux', architecture: 'arm', variant: 'v7' }, 2),
    d({ os: 'linux', architecture: 'arm64' }, 3), d({ os: 'windows', architecture: 'amd64' }, 4), d({ os: 'linux', architecture: 'amd64' }, 5), d(undefined, 6)];
  assert.equal(selectPlatform(list, parsePlatform('linux/arm/v7'))?.size, 2);
  assert.equal(selectPlatform(list, parsePlatform('linux/arm/v6'))?.size, 1);
  assert.equal(selectPlatform(list, parsePlatform('linux/arm64/v8'))?.size, 3);
  assert.equal(selectPlatform(list, parsePlatform('linux/arm64'))?.size, 3);
  assert.equal(selectPlatform(list, parsePlatform('linux/amd64'))?.size, 5);
  assert.equal(selectPlatform(list, parsePlatform('windows/amd64'))?.size, 4);
  assert.equal(selectPlatform(list, parsePlatform('linux/arm'))?.size, 1, 'no variant asked: the first arm entry');
  assert.equal(selectPlatform(list, parsePlatform('linux/arm/v8')), undefined);
  assert.throws(() => parsePlatform('linux'), /expected os\/arch/);
});

test('server Range parsing agrees with a reference slice for every single range', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1000 }), fc.option(fc.nat(1200)), fc.option(fc.nat(1200)), (size, a, b) => {
    if (a === null && b === null) return;
    const header = `bytes=${a ?? ''}-${b ?? ''}`;
    const r = parseRange(header, size);
    // Reference: RFC 9110 semantics for one byte range.
    let want: { start: number; end: number } | null | 'unsatisfiable';
    if (a === null) want = b === 0 ? 'unsatisfiable' : { start: Math.max(0, size - b!), end: size - 1 };
    else if (b !== null && b < a) want = null;
    else if (a >= size) want = 'unsatisfiable';
    else want = { start: a, end: Math.min(b ?? size - 1, size - 1) };
    assert.deepEqual(r, want, header);
  }));
  assert.equal(parseRange('bytes=0-1,5-6', 10), null);
  assert.equal(parseRange('items=0-1', 10), null);
});

test('client-side header parsing: Content-Range, Retry-After', () => {
  assert.deepEqual(parseContentRange('bytes 0-9/100'), { start: 0, end: 9, total: 100 });
  assert.deepEqual(parseContentRange('bytes 5-5/*'), { start: 5, end: 5 });
  assert.equal(parseContentRange('bytes 9-0/100'), undefined);
  assert.equal(parseContentRange('0-9'), undefined);
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.equal(parseRetryAfter('soon'), undefined);
});

test('CLI option parsing: --listen and --auth', () => {
  assert.deepEqual(parseListen('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
  assert.deepEqual(parseListen(':0'), { host: '0.0.0.0', port: 0 });
  assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
  assert.throws(() => parseListen('nope'), /invalid --listen/);
  assert.throws(() => parseListen('h:99999'), /invalid --listen/);
  assert.deepEqual(parseAuthOption('basic:u:p:w'), { kind: 'basic', username: 'u', password: 'p:w' });
  assert.deepEqual(parseAuthOption('token:u:p'), { kind: 'token', username: 'u', password: 'p' });
  assert.throws(() => parseAuthOption('digest:u:p'), /basic:USER:PASS/);
  assert.throws(() => parseAuthOption('basic:u:'), /basic:USER:PASS/);
});
