/** Starting an in-process NBD server on a temporary unix socket, stopped after the test. */
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import type { Disk } from '../../src/io/types.ts';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.ts';
import { tempDir } from '../helpers/env.ts';

/** Tests expect warnings (hostile clients); keep them off the test output unless asked for. */
export const quietLog = pino({ level: process.env.DADI_LOG_LEVEL ?? 'silent' });

export async function startServer(t: TestContext, disk: Disk | Promise<Disk>, opts: NbdServerOptions = {}): Promise<{ server: NbdServer; path: string; uri: string }> {
  const dir = await tempDir(t, 'dadi-nbd-');
  const path = join(dir, 'nbd.sock');
  const server = new NbdServer(disk, { log: quietLog, ...opts });
  await server.listen({ unix: path });
  t.after(() => server.close());
  return { server, path, uri: server.uri };
}

/** Deterministic pseudo-random bytes (xorshift), so expected contents need no stored fixture. */
export function patternBytes(length: number, seed = 1): Buffer {
  const out = Buffer.alloc(Math.ceil(length / 4) * 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, length);
}
