/**
 * `dadi p2p root`: the caching server in front of the registry that P2P trees fetch from.
 * `dadi p2p simulate`: the discrete-event model of many hosts on the same topology code.
 */
import type { Command } from 'commander';

interface RootFlags { listen: string; cacheDir?: string; cacheSize: string; tokenFile?: string; insecure?: boolean; json?: boolean }

export function register(program: Command): void {
  const p2p = program.command('p2p').description('P2P distribution of image blobs among hosts');
  p2p
    .command('root')
    .description('serve registry blobs to P2P agents, fetching each range once with this node\'s registry credentials and caching it')
    .option('--listen <host:port>', 'where agents reach the root', '0.0.0.0:7070')
    .option('--cache-dir <dir>', 'block cache (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--cache-size <size>', 'cap on the cache\'s disk use', '16G')
    .option('--token-file <file>', 'shared peer token (agents send it as a Bearer token); without it anyone can read through the root')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--json', 'print the listening line as JSON')
    .addHelpText('after', [
      '',
      'Example:',
      '  dadi p2p root --listen 10.0.0.2:7070 --token-file /etc/dadi/p2p.token --cache-dir /var/cache/dadi-root',
      '  curl -H "Authorization: Bearer $(cat /etc/dadi/p2p.token)" -H "X-Dadi-Repository: reg:5000/app" \\',
      '       -H "X-Dadi-Blob-Size: 1234567" -r 0-1023 http://10.0.0.2:7070/blobs/sha256:…',
    ].join('\n'))
    .action(async (opts: RootFlags) => {
      const { readFile } = await import('node:fs/promises');
      const { BlobCache, resolveCacheDir } = await import('../../io/cache.ts');
      const { RegistryClient } = await import('../../registry/client.ts');
      const { startRoot } = await import('../../p2p/root.ts');
      const { parseSize } = await import('../../util/size.ts');
      const { log } = await import('../../util/log.ts');
      if (!/^[^\s]+:\d{1,5}$/.test(opts.listen)) throw new Error(`--listen ${opts.listen}: expected HOST:PORT`);
      const token = opts.tokenFile ? (await readFile(opts.tokenFile, 'utf8')).trim() : '';
      if (opts.tokenFile && !token) throw new Error(`--token-file ${opts.tokenFile}: the file is empty`);
      if (!token) log.warn('p2p root without --token-file: any host that reaches it can read through its registry credentials');
      const client = new RegistryClient({ ...(opts.insecure ? { insecure: true } : {}) });
      const cache = await BlobCache.open({ dir: resolveCacheDir(opts.cacheDir), capacityBytes: parseSize(opts.cacheSize) });
      const root = await startRoot({ listen: opts.listen, token, cache, client });
      const info = { listen: root.address, cacheDir: resolveCacheDir(opts.cacheDir), pid: process.pid };
      process.stdout.write(opts.json ? `${JSON.stringify(info)}\n` : `p2p root listening on ${root.address}\n`);
      log.info(info, 'p2p root serving');
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void (async () => {
            await root.close();
            await cache.close();
            await client.close();
            log.info(root.server.stats, 'p2p root stopped');
            resolve();
          })();
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
