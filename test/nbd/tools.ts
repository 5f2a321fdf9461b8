/** Running the real NBD clients (asynchronously: the server under test shares this event loop). */
import { execFile } from 'node:child_process';

export interface ToolResult { stdout: string; stderr: string }

export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Runs qemu-io commands against an NBD URI and fails if any command reports a mismatch or error. */
export async function qemuIo(uri: string, commands: string[]): Promise<string> {
  const args = ['-f', 'raw'];
  for (const c of commands) args.push('-c', c);
  const { stdout, stderr } = await run('qemu-io', [...args, uri]);
  const out = stdout + stderr;
  if (/Pattern verification failed|failed:|error/i.test(out)) throw new Error(`qemu-io reported a problem:\n${out}`);
  return out;
}

/** A deterministic list of qemu-io write/read-verify commands over [0, size). */
export function qemuIoWorkload(size: number, count: number, seed: number): { writes: string[]; verifies: string[] } {
  let x = seed >>> 0 || 1;
  const rnd = (n: number): number => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  };
  // Non-overlapping slots so every final pattern is known.
  const slot = 64 * 1024;
  const slots = Math.floor(size / slot);
  const used = new Set<number>();
  const writes: string[] = [];
  const verifies: string[] = [];
  for (let i = 0; i < count && used.size < slots; i++) {
    let s = rnd(slots);
    while (used.has(s)) s = (s + 1) % slots;
    used.add(s);
    const len = 512 * (1 + rnd(slot / 512));
    const pattern = 1 + rnd(254);
    const at = s * slot;
    writes.push(`write -P ${pattern} ${at} ${len}`);
    verifies.push(`read -P ${pattern} ${at} ${len}`);
  }
  return { writes, verifies };
}
