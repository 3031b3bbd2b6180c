// npm run bench [-- <scenario>...] [--quick] [--full] [--pairs N] [--cpu-prof] [--out DIR]
//
// Runs each benchmark scenario, prints its table and writes bench/results/<scenario>.json.
// Every figure is set against a baseline measured in the same run; goals are reported,
// never asserted. --quick runs each scenario once at a tiny size (CI smoke);
// --full measures more pairs/rounds; --pairs N sets them (e.g. for a --cpu-prof run);
// --cpu-prof writes the deployer process's CPU profile (see bench/profile.ts).
// Exits non-zero if any scenario fails.
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo, renderTable, writeResult, type ScenarioContext } from './lib/report.ts';
import { SCENARIOS } from './scenarios/index.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    pairs: { type: 'string' },
    out: { type: 'string', default: join(import.meta.dirname, 'results') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run bench [-- <scenario>...] [--quick] [--full] [--pairs N] [--cpu-prof] [--out DIR]\nscenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  process.exit(0);
}

const unknown = positionals.filter((p) => !SCENARIOS.some((s) => s.name === p));
if (unknown.length) {
  console.error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}
if (values.quick && values.full) {
  console.error('--quick and --full exclude each other');
  process.exit(2);
}

const selected = positionals.length ? SCENARIOS.filter((s) => positionals.includes(s.name)) : SCENARIOS;
const mode = values.quick ? 'quick' : values.full ? 'full' : 'default';
const outDir = values.out;
mkdirSync(outDir, { recursive: true });
const machine = await machineInfo();
console.log(`bench: ${mode} mode, ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, Docker ${machine.docker}, load ${machine.loadAverage.join(' ')}`);

// Each scenario has its own budget; loops inside stop at the deadline and say so.
const BUDGET_MS: Record<string, number> = { quick: 60_000, default: 10 * 60_000, full: 40 * 60_000 };

let failed = 0;
for (const scenario of selected) {
  console.log(`\n== ${scenario.name}: ${scenario.title}`);
  const started = Date.now();
  const ctx: ScenarioContext = {
    quick: values.quick,
    full: values.full,
    cpuProf: values['cpu-prof'],
    pairs: values.pairs ? Math.max(1, Math.min(100, Number(values.pairs) || 1)) : undefined,
    outDir,
    deadline: started + BUDGET_MS[mode]!,
    log: (m) => console.log(`  [${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${m}`),
  };
  try {
    const result = await scenario.run(ctx);
    const durationMs = Date.now() - started;
    console.log(renderTable(result.rows));
    for (const n of result.notes) console.log(`  · ${n}`);
    const file = writeResult(outDir, scenario.name, {
      scenario: scenario.name,
      title: scenario.title,
      mode,
      date: new Date(started).toISOString(),
      durationMs,
      command: `node bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
      machine,
      // Other work on the machine shows here (the figures are only as quiet as the machine was).
      loadAverageAfter: loadavg().map((l) => Math.round(l * 100) / 100),
      ...result,
    });
    console.log(`  wrote ${file} (${(durationMs / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed++;
    console.error(`scenario ${scenario.name} FAILED after ${((Date.now() - started) / 1000).toFixed(1)} s:`, err instanceof Error ? (err.stack ?? err.message) : err);
  }
}
if (failed) console.error(`\n${failed} scenario(s) failed`);
// Children, sockets and timers are all closed by the scenarios; exit explicitly anyway
// so a stray handle in a library cannot keep CI waiting.
process.exit(failed ? 1 : 0);
