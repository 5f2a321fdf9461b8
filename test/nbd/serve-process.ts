/** Running `dadi serve` as a real process for system tests: start, wait for readiness, stop. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { dadiArgv } from '../helpers/env.ts';

export interface ServeInfo { listen: string; uri: string; size: number; writable: boolean; exportName: string; pid: number }

export interface ServeProcess {
  child: ChildProcess;
  info: ServeInfo;
  stderr: () => string;
  /** Sends the signal and resolves with the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Starts `dadi serve ARGS --json` and resolves once it printed its listening line. */
export async function startServe(t: TestContext, args: string[]): Promise<ServeProcess> {
  const [cmd, argv] = dadiArgv(['serve', ...args, '--json']);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DADI_LOG_LEVEL: 'warn' } });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const info = await new Promise<ServeInfo>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dadi serve did not start in 30 s\n${err}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)) as ServeInfo);
      }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`dadi serve exited (${code}) before listening\n${err}`)); });
  });
  return {
    child,
    info,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode!;
      child.kill(signal);
      return exited;
    },
  };
}

export { once };
