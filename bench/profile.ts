// node bench/profile.ts FILE.cpuprofile [--top N] [--callers FUNCTION [--depth N]] [--inclusive F1,F2,...]
// Summarises a CPU profile written by `npm run bench -- <scenario> --cpu-prof` (the
// daemon's, under bench/results/profiles/) or by `node --cpu-prof bench/run.ts …`.
import { parseArgs } from 'node:util';
import { callersOf, inclusiveTimes, renderSummary, summarizeProfile } from './lib/profile.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, callers: { type: 'string' }, depth: { type: 'string', default: '4' }, inclusive: { type: 'string' } } });
if (positionals.length === 0) {
  console.error('usage: node bench/profile.ts FILE.cpuprofile [--top N]');
  process.exit(2);
}
for (const file of positionals) {
  console.log(`== ${file}`);
  if (values.inclusive) {
    console.log('inclusive time (self + callees; synchronous parts of async functions):');
    for (const t of inclusiveTimes(file, values.inclusive.split(','))) console.log(`  ${(t.busyShare * 100).toFixed(1).padStart(5)}%  ${(t.totalMs / 1000).toFixed(2).padStart(7)} s  ${t.name}`);
  } else if (values.callers) {
    console.log(`callers of ${values.callers} (self time, innermost caller first):`);
    for (const c of callersOf(file, values.callers, Number(values.depth), Number(values.top))) console.log(`  ${(c.selfMs / 1000).toFixed(2).padStart(7)} s  ${c.chain}`);
  } else {
    console.log(renderSummary(summarizeProfile(file, Number(values.top))));
  }
}
