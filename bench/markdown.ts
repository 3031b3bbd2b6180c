// node bench/markdown.ts [RESULTS_DIR]
// Prints the results of the last run (bench/results/*.json) as Markdown tables, the
// way docs/benchmarks.md shows them.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderMarkdown, type MachineInfo, type Row } from './lib/report.ts';
import { SCENARIOS } from './scenarios/index.ts';

const dir = process.argv[2] ?? join(import.meta.dirname, 'results');
for (const s of SCENARIOS) {
  const file = join(dir, `${s.name}.json`);
  if (!existsSync(file)) {
    console.log(`### ${s.name}\n\nno results\n`);
    continue;
  }
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { date: string; mode: string; durationMs: number; machine: MachineInfo; loadAverageAfter?: number[]; rows: Row[]; notes: string[] };
  console.log(`### ${s.name}\n`);
  console.log(`${doc.mode} mode, ${doc.date}, ${(doc.durationMs / 1000).toFixed(0)} s; load average before ${doc.machine.loadAverage.join(' / ')}, after ${doc.loadAverageAfter?.join(' / ') ?? '?'}\n`);
  console.log(renderMarkdown(doc.rows));
  console.log('');
  for (const n of doc.notes) console.log(`- ${n}`);
  console.log('');
}
