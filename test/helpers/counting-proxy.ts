/**
 * A loopback HTTP proxy in front of a registry that counts the response body bytes it relays per
 * blob digest, so a test can say how much of an image a pull or a container start fetched.
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface CountingProxy {
  /** `127.0.0.1:PORT`: use it as the registry part of image references. */
  hostPort: string;
  /** Body bytes relayed for `/v2/.../blobs/<digest>` responses, by digest. */
  blobBytes: Map<string, number>;
  /** Sum over `digests` (all blobs when omitted). */
  bytesFor(digests?: readonly string[]): number;
  reset(): void;
}

export async function startCountingProxy(t: TestContext, upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream);
  const blobBytes = new Map<string, number>();
  const server = createServer((req, res) => {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '');
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.on('data', (d: Buffer) => {
        if (m && req.method === 'GET') blobBytes.set(m[1]!, (blobBytes.get(m[1]!) ?? 0) + d.length);
      });
      ur.pipe(res);
    });
    up.on('error', () => { res.destroy(); });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const port = (server.address() as AddressInfo).port;
  return {
    hostPort: `127.0.0.1:${port}`,
    blobBytes,
    bytesFor: (digests) => [...blobBytes.entries()].filter(([d]) => !digests || digests.includes(d)).reduce((s, [, n]) => s + n, 0),
    reset: () => blobBytes.clear(),
  };
}
