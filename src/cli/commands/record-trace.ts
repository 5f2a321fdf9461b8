/**
 * `dadi record-trace [--address SOCK] [--namespace NS] [--timeout SECONDS] [--insecure] IMAGE
 * NEW_IMAGE [-- CMD...]`: run IMAGE once through the dadi snapshotter recording what it reads,
 * then push NEW_IMAGE = IMAGE + an acceleration layer holding that trace (overlaybd's format),
 * which the snapshotter replays on every cold start of NEW_IMAGE.
 */
import type { Command } from 'commander';

interface Flags { address: string; namespace: string; snapshotter: string; timeout: string; insecure?: boolean; json?: boolean; quiet?: boolean }

export function register(program: Command): void {
  program
    .command('record-trace')
    .description('run an image once through the dadi snapshotter, record the blocks it reads, and push it with an acceleration layer holding the trace')
    .argument('<image>', 'the dadi image to run, host[:port]/repo[:tag]')
    .argument('<new-image>', 'where to push the image with its acceleration layer')
    .argument('[cmd...]', 'command to run instead of the image\'s own (after --)')
    .option('--address <socket>', 'containerd socket', '/run/containerd/containerd.sock')
    .option('--namespace <ns>', 'containerd namespace', 'default')
    .option('--snapshotter <name>', 'the name the dadi snapshotter has in containerd\'s [proxy_plugins]', 'dadi')
    .option('--timeout <seconds>', 'stop the container after this long and keep what it read so far', '60')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'print nothing but errors')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi record-trace registry.example.com/team/app:v1-obd registry.example.com/team/app:v1-obd-trace',
      '  dadi record-trace --timeout 20 127.0.0.1:5000/app:obd 127.0.0.1:5000/app:obd-trace -- /app/start --warmup',
    ].join('\n'))
    .action(async (image: string, newImage: string, cmd: string[], flags: Flags) => {
      const timeoutSec = Number(flags.timeout);
      if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) throw new Error(`--timeout ${flags.timeout}: expected a number of seconds above zero`);
      const { recordTrace } = await import('../../daemon/containerd/record-trace.ts');
      const quiet = flags.quiet || flags.json;
      const r = await recordTrace(image, newImage, {
        address: flags.address, namespace: flags.namespace, snapshotter: flags.snapshotter, timeoutSec,
        ...(flags.insecure ? { insecure: true } : {}), ...(cmd.length > 0 ? { command: cmd } : {}),
        ...(quiet ? {} : { progress: (line: string) => process.stdout.write(`${line}\n`) }),
      });
      if (flags.json) process.stdout.write(JSON.stringify(r) + '\n');
      else if (!flags.quiet) process.stdout.write(`recorded ${r.records} ranges (${r.tracedBytes} bytes)${r.timedOut ? ' until the timeout' : ''}; pushed ${newImage}\n`);
    });
}
