/**
 * `dadi pull [--address SOCK] [--namespace NS] [--snapshotter NAME] [--insecure] REF`: a lazy
 * pull of a dadi image into containerd for the dadi snapshotter (metadata only; no layer blob is
 * fetched), after which `ctr run --snapshotter dadi REF ...` runs it.
 */
import type { Command } from 'commander';

interface PullFlags { address: string; namespace: string; snapshotter: string; insecure?: boolean; platform?: string; json?: boolean; quiet?: boolean }

export function register(program: Command): void {
  program
    .command('pull')
    .description('pull a dadi image into containerd lazily: manifest and config only, layers prepared remotely by the dadi snapshotter')
    .argument('<ref>', 'image reference, host[:port]/repo[:tag][@sha256:...]')
    .option('--address <socket>', 'containerd socket', '/run/containerd/containerd.sock')
    .option('--namespace <ns>', 'containerd namespace', 'default')
    .option('--snapshotter <name>', 'the name the dadi snapshotter has in containerd\'s [proxy_plugins]', 'dadi')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from an image index (default: this machine)')
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'print nothing but errors')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi pull registry.example.com/team/app:v1-obd',
      '  ctr run --rm --snapshotter dadi registry.example.com/team/app:v1-obd app1 /bin/sh -c "echo hi"',
    ].join('\n'))
    .action(async (ref: string, flags: PullFlags) => {
      const { pullImage } = await import('../../daemon/containerd/pull.ts');
      const { parsePlatform } = await import('../../registry/manifests.ts');
      const quiet = flags.quiet || flags.json;
      const r = await pullImage(ref, {
        address: flags.address, namespace: flags.namespace, snapshotter: flags.snapshotter,
        ...(flags.insecure ? { insecure: true } : {}),
        ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
        ...(quiet ? {} : { progress: (line: string) => process.stdout.write(`${line}\n`) }),
      });
      if (flags.json) process.stdout.write(JSON.stringify(r) + '\n');
      else if (!flags.quiet) process.stdout.write(`pulled ${r.name} (${r.layers} layers, ${r.registry.bytes} bytes from the registry in ${r.seconds.toFixed(2)} s)\n`);
    });
}
