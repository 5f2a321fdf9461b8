/**
 * `dadi image copy SRC DST`: copy an image between registries (or OCI layouts) byte for byte,
 * keeping its digest and annotations; blobs the destination has are skipped, and within one
 * registry they are mounted across repositories instead of uploaded.
 */
import type { Command } from 'commander';

export function register(program: Command): void {
  const image = program.commands.find((c) => c.name() === 'image') ?? program.command('image').description('inspect and copy dadi (overlaybd) images');
  image
    .command('copy')
    .description('copy an image between registries or OCI layouts byte for byte (digests and overlaybd annotations kept)')
    .argument('<src>', 'registry reference or oci:DIR:TAG')
    .argument('<dst>', 'registry reference or oci:DIR[:TAG] (default tag: the source\'s)')
    .option('--insecure', 'plain HTTP to the registries (loopback registries use it anyway)')
    .option('--json', 'print one JSON line per blob and manifest, then a summary')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi image copy 127.0.0.1:5000/app:v1-obd registry.example.com/team/app:v1-obd',
      '  dadi image copy registry.example.com/team/app:v1-obd oci:/srv/images:app',
    ].join('\n'))
    .action(async (src: string, dst: string, opts: { insecure?: boolean; json?: boolean }) => {
      const { RegistryClient } = await import('../../registry/client.ts');
      const { copyImage } = await import('../../image/copy.ts');
      const client = new RegistryClient({ insecure: opts.insecure ?? false });
      try {
        const sum = await copyImage(src, dst, client, (e) => {
          if (opts.json) process.stdout.write(`${JSON.stringify(e)}\n`);
        });
        if (opts.json) process.stdout.write(`${JSON.stringify({ what: 'summary', ...sum })}\n`);
        else {
          process.stdout.write(`copied ${src} to ${dst}: ${sum.digest}, ${sum.blobs} blob(s): ` +
            `${sum.uploadedBytes} bytes uploaded, ${sum.mounted} mounted from another repository, ${sum.existing} already there\n`);
        }
      } finally {
        await client.close();
      }
    });
}
