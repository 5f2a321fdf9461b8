/**
 * `dadi cache verify [--cache-dir DIR] [--json] [--evict-bad]`: checks every cached blob offline,
 * against its sha256 when complete, else chunk by chunk against the digest table kept beside it.
 * Exit status 1 when any blob is bad. (Joins a `dadi cache` group another command may have made.)
 */
import type { Command } from 'commander';

interface Options { cacheDir?: string; json?: boolean; evictBad?: boolean }

export function register(program: Command): void {
  const group = program.commands.find((c) => c.name() === 'cache')
    ?? program.command('cache').description('inspect and check the block cache');
  group
    .command('verify')
    .description('check every cached blob offline: complete blobs against their digest, partial ones chunk by chunk against their digest table')
    .option('--cache-dir <dir>', 'the cache (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--json', 'one JSON object per blob')
    .option('--evict-bad', 'remove blobs found bad (only while no daemon or serve uses the cache)')
    .addHelpText('after', [
      '',
      'Online, only verified bytes enter the cache, so nothing is re-verified after a restart; this',
      'checks what may have happened to the cache files since. Exit status 1 if any blob is bad.',
      '',
      'Examples:',
      '  dadi cache verify',
      '  dadi cache verify --cache-dir /var/cache/dadi --json',
    ].join('\n'))
    .action(async (opts: Options) => {
      const { resolveCacheDir } = await import('../../io/cache.ts');
      const { verifyCache } = await import('../../image/cache-verify.ts');
      const dir = resolveCacheDir(opts.cacheDir);
      const reports = await verifyCache(dir, {
        ...(opts.evictBad ? { evictBad: true } : {}),
        onBlob: (r) => {
          if (opts.json) { process.stdout.write(`${JSON.stringify(r)}\n`); return; }
          const how = r.method === 'whole' ? 'whole blob' : r.method === 'table' ? `${r.chunksVerified}/${r.chunksPresent} cached chunks` : 'not checkable';
          const bad = r.badChunks.length > 0 ? ` bad chunks: ${r.badChunks.join(', ')}` : '';
          process.stdout.write(`${r.verdict.padEnd(9)} ${r.digest} ${how}${bad}${r.note ? ` (${r.note})` : ''}\n`);
        },
      });
      const bad = reports.filter((r) => r.verdict === 'bad').length;
      if (!opts.json) {
        const ok = reports.filter((r) => r.verdict === 'ok').length;
        process.stderr.write(`${dir}: ${reports.length} blobs, ${ok} ok, ${bad} bad, ${reports.length - ok - bad} unchecked\n`);
      }
      if (bad > 0) process.exitCode = 1;
    });
}
