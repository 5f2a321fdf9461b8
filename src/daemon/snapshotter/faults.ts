/**
 * Fault points for crash tests: `DADI_SNAPSHOTTER_FAULT=commit:after-seal` makes the daemon
 * SIGKILL itself when it reaches that point, the same as `kill -9` from outside at the worst
 * moment. Unset (always, outside tests), a fault point costs one environment lookup.
 */
import { log } from '../../util/log.ts';

export const FAULT_ENV = 'DADI_SNAPSHOTTER_FAULT';

export function faultPoint(name: string): void {
  const want = process.env[FAULT_ENV];
  if (!want || !want.split(',').includes(name)) return;
  log.warn({ faultPoint: name }, 'fault point reached: killing the daemon (SIGKILL)');
  process.kill(process.pid, 'SIGKILL');
  // The signal is delivered on the way back from the kill syscall; never run past this point.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
}
