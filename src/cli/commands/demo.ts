/**
 * `dadi demo`: the main job end to end on the embedded defaults (src/demo/run.ts). Ctrl-C stops
 * at the next step and cleans up; the exit code is 0 when every step that ran passed (skipped
 * steps included), 1 on a failure, 130 when interrupted.
 */
import type { Command } from 'commander';

interface DemoCliOptions { keep?: boolean; json?: boolean; mount: boolean; binarySize: string }

export function register(program: Command): void {
  program
    .command('demo')
    .description('build, push, convert, lazily attach and mount a small image on an embedded registry, and report what was fetched')
    .option('--keep', 'keep the temporary directory (registry storage, caches) and print its path')
    .option('--json', 'print one JSON object per step instead of the log')
    .option('--no-mount', 'do not mount the image; list and read it through the userspace ext4 reader instead')
    .option('--binary-size <size>', 'total size of the generated binary-like files in the base layer (the bulk of the image)', '16M')
    .addHelpText('after', [
      '',
      'Steps: start the embedded registry in a temporary directory on 127.0.0.1 (a free port); build a',
      '3-layer OCI image from generated content (files, binaries, a symlink, a hard link, a whiteout)',
      'and push it; convert it with dadi convert; attach the result lazily and report the attach time',
      'and bytes fetched against the image size; mount it read-only, list the tree, read a file and',
      'check both against the generated content; report the bytes fetched and cache hits; clean up.',
      '',
      'Converting needs no privilege (dadi writes ext4 in userspace). Mounting needs root with',
      'CAP_SYS_ADMIN, mount(8), and either the kernel nbd module with nbd-client or /dev/fuse with',
      'nbdfuse, fusermount3 and losetup. Without them the demo says what it skipped and why, lists',
      'and reads the image through the userspace ext4 reader instead, and still exits 0.',
      '',
      'Ctrl-C stops after the current step and undoes everything (mount, device, servers, files).',
      'Exit codes: 0 every step that ran passed, 1 a step failed or read back wrong data, 130',
      'interrupted (after cleaning up).',
      '',
      'Examples:',
      '  sudo dadi demo',
      '  sudo dadi demo --json --keep',
      '  dadi demo --no-mount',
    ].join('\n'))
    .action(async (opts: DemoCliOptions) => {
      const { runDemo, DemoInterrupted } = await import('../../demo/run.ts');
      const { formatEvent } = await import('../../demo/report.ts');
      const { parseSize } = await import('../../util/size.ts');
      const binaryBytes = parseSize(opts.binarySize);
      if (binaryBytes < 2 || binaryBytes > 1 << 30) throw new Error(`--binary-size must be between 2 bytes and 1G, got ${opts.binarySize}`);
      const controller = new AbortController();
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals): void => {
        signals++;
        controller.abort();
        process.stderr.write(signals === 1 ? `dadi demo: ${signal}: stopping after the current step, then cleaning up\n`
          : 'dadi demo: still cleaning up (unmounting, stopping servers); please wait\n');
      };
      // A closed stdout (`dadi demo | head`) must not crash the process mid-mount: stop writing,
      // stop at the next step and clean up, as for Ctrl-C.
      let outputClosed = false;
      const onOutputError = (err: NodeJS.ErrnoException): void => {
        if (outputClosed) return;
        outputClosed = true;
        controller.abort();
        process.stderr.write(`dadi demo: standard output failed (${err.code ?? err.message}); stopping after the current step, then cleaning up\n`);
      };
      const print = (text: string): void => {
        if (!outputClosed) process.stdout.write(text);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      // Left in place after the demo: a write still queued may fail once it has ended.
      process.stdout.on('error', onOutputError);
      const started = performance.now();
      if (!opts.json) print('dadi demo: build an OCI image, push it to an embedded registry, convert it, attach it lazily, mount it and read it\n');
      try {
        const result = await runDemo({
          keep: opts.keep ?? false, mount: opts.mount, binaryBytes, signal: controller.signal,
          onEvent: (e) => print(opts.json ? `${JSON.stringify(e)}\n` : `${formatEvent(e, (performance.now() - started) / 1000)}\n`),
        });
        if (!result.ok) throw new Error(`the mounted image differs from the generated one: ${result.problems.join('; ')}`);
      } catch (err) {
        if (!(err instanceof DemoInterrupted)) throw err;
        process.stderr.write(`dadi demo: ${err.message}\n`);
        process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
