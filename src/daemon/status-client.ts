/**
 * Reads a running snapshotter's /status (status-server.ts) over TCP or its unix socket, for
 * `dadi image info --daemon`.
 */
import { request } from 'node:http';
import { parseHttpAddress } from './http-address.ts';
import type { DaemonStatus } from './snapshotter/status.ts';

export type { DaemonStatus, ImageStatus, LayerStatus } from './snapshotter/status.ts';

export async function fetchDaemonStatus(address: string, timeoutMs = 10_000): Promise<DaemonStatus> {
  const addr = parseHttpAddress(address);
  const target = 'unix' in addr ? { socketPath: addr.unix } : { host: addr.host, port: addr.port };
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({ ...target, path: '/status', method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`snapshotter status at ${address}: HTTP ${res.statusCode}: ${text.trim()}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`snapshotter status at ${address}: no answer in ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new Error(`cannot reach the snapshotter's status endpoint at ${address}: ${err.message} ` +
      '(is `dadi snapshotter` running with metricsAddress / --metrics-address set to it?)', { cause: err })));
    req.end();
  });
  return JSON.parse(body) as DaemonStatus;
}
