/** The simulation's table and CSV. */
import { quantile, summary, type SimResult } from './model.ts';

export function resultTable(results: readonly SimResult[]): string {
  const head = ['tree', 'hosts', 'containers', 'height', 'p50 s', 'p99 s', 'max s', 'registry copies'];
  const rows = results.map((r) => {
    const s = summary(r);
    return [r.fanout === 0 ? 'registry only' : `${r.fanout}-ary`, r.hosts, r.containers, r.treeHeight || '-',
      s.p50_s!.toFixed(2), s.p99_s!.toFixed(2), s.max_s!.toFixed(2), s.registry_copies!.toFixed(2)].map(String);
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** One row per container: tree, host count, container index, seconds. */
export function resultCsv(results: readonly SimResult[]): string {
  const lines = ['fanout,hosts,containers,container,seconds'];
  for (const r of results) r.containerSeconds.forEach((s, i) => lines.push(`${r.fanout},${r.hosts},${r.containers},${i},${s.toFixed(6)}`));
  return `${lines.join('\n')}\n`;
}

export { quantile };
