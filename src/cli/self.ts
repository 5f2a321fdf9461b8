/**
 * The command line that runs this installation's dadi CLI, for `dadi mount`, which starts a
 * `dadi serve` of its own in the background. Derived from this module's own location so it is
 * right whether dadi runs compiled (dist/, `.js`) or from its TypeScript sources through tsx,
 * and whether the caller is the CLI or a library user.
 */
import { fileURLToPath } from 'node:url';

export function dadiCommand(): string[] {
  const fromSource = import.meta.url.endsWith('.ts');
  const main = fileURLToPath(new URL(`./main.${fromSource ? 'ts' : 'js'}`, import.meta.url));
  return fromSource ? [process.execPath, '--import', import.meta.resolve('tsx'), main] : [process.execPath, main];
}
