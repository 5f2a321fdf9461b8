/**
 * The `dadi` command. Every file in ./commands registers one command (or a command group) with
 * commander; heavy modules are imported inside the action handlers so `dadi --help` stays fast.
 * Errors are one line on stderr, `dadi: <what failed and why>`: exit status 2 for a mistake in
 * the command line (naming the flag and the help to read), 1 for a failure; `--verbose` adds
 * what happened inside (internal command lines, tool output) and the stack.
 */
import { Command, CommanderError } from 'commander';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { errorDetail, errorMessage, UsageError } from '../errors.ts';

export interface CommandModule {
  register(program: Command): void;
}

export async function buildProgram(): Promise<Command> {
  const program = new Command('dadi')
    .description('block-level container images, served on demand (DADI / overlaybd formats)')
    .version('0.1.0')
    .option('-v, --verbose', 'on errors, also show what happened inside (internal commands, tool output)')
    // Errors are printed by main() as one line; commander only detects them.
    .configureOutput({ outputError: () => {} })
    .exitOverride();
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'commands');
  const files = (await readdir(dir)).filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts')).sort();
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as CommandModule;
    mod.register(program);
  }
  return program;
}

/** `dadi layer commit` for argv [..., 'layer', 'commit', '--x'] : the deepest command named. */
function commandPath(program: Command, args: string[]): string {
  const names = ['dadi'];
  let cmd = program;
  for (const a of args) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    names.push(sub.name());
    cmd = sub;
  }
  return names.join(' ');
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram();
  const args = argv.slice(2);
  const verbose = args.includes('--verbose') || args.includes('-v');
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help') return 2; // no command given: the help went to stderr
      const what = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
      process.stderr.write(`dadi: ${what} (see '${commandPath(program, args)} --help')\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`dadi: ${err.message} (see '${commandPath(program, args)} --help')\n`);
      return 2;
    }
    process.stderr.write(`dadi: ${errorMessage(err)}\n`);
    if (verbose || process.env.DADI_DEBUG) {
      for (const d of errorDetail(err)) process.stderr.write(`${d}\n`);
      if (err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    }
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && /cli[\\/]main\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly) {
  process.exitCode = await main(process.argv);
}
