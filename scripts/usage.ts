// Prints the help of every dadi command as Markdown, so README's command reference is the CLI's
// own text: `node --import tsx scripts/usage.ts > /tmp/usage.md`.
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/main.ts';

function leaves(cmd: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  const subs = cmd.commands.filter((c) => c.name() !== 'help');
  if (subs.length === 0) return [{ path, cmd }];
  return subs.flatMap((c) => leaves(c, [...path, c.name()]));
}

const program = await buildProgram();
program.configureHelp({ helpWidth: 100 });
for (const { path, cmd } of leaves(program)) {
  cmd.configureHelp({ helpWidth: 100 });
  let text = '';
  cmd.configureOutput({ writeOut: (s) => { text += s; } });
  cmd.outputHelp();
  process.stdout.write(`### \`dadi ${path.join(' ')}\`\n\n\`\`\`\n${text.trimEnd()}\n\`\`\`\n\n`);
}
