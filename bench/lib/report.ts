// Result shapes, the printed table and the JSON file each scenario writes.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';

/** One line of a scenario's table: a figure for the baseline and for the deployer. */
export interface Row {
  metric: string;
  unit: string;
  baseline: number | null;
  deployer: number | null;
  /** deployer / baseline (or as the scenario defines it, said in `note`). */
  ratio: number | null;
  /** The goal from the issue, in words ("≤ 1.05", "< 300 ms"), or "" for none. */
  goal: string;
  /** null: no goal on this line, or not measurable at this size (quick mode). */
  met: boolean | null;
  note?: string;
}

export interface ScenarioResult {
  params: Record<string, unknown>;
  rows: Row[];
  notes: string[];
  /** Raw per-round figures, so medians can be recomputed from the JSON. */
  samples?: unknown;
}

export interface ScenarioContext {
  quick: boolean;
  /** The issue's full sizes even where the default is smaller to fit the time budget. */
  full: boolean;
  /** --pairs N: measured pairs (or rounds) instead of the mode's default, e.g. for a profiling run. */
  pairs: number | undefined;
  /** Start daemon child processes with --cpu-prof, profiles under `<outDir>/profiles`. */
  cpuProf: boolean;
  outDir: string;
  /** Epoch ms after which loops stop early (results then say `truncated`). */
  deadline: number;
  log(message: string): void;
}

export interface Scenario {
  name: string;
  title: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  freeMemoryGiB: number;
  loadAverage: number[];
  kernel: string;
  node: string;
  docker: string;
  redis: string;
  gitCommit: string;
  gitDirtyFiles: number;
}

export async function machineInfo(): Promise<MachineInfo> {
  const cpuList = cpus();
  let dockerVersion = 'unknown';
  try {
    const v = (await new Docker().version()) as { Version?: string; ApiVersion?: string };
    dockerVersion = `${v.Version} (API ${v.ApiVersion})`;
  } catch {
    /* reported as unknown */
  }
  const sh = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
    } catch {
      return '';
    }
  };
  const redisInfo = sh('redis-cli', ['-u', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', 'INFO', 'server']);
  return {
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    kernel: release(),
    node: process.version,
    docker: dockerVersion,
    redis: /redis_version:(\S+)/.exec(redisInfo)?.[1] ?? 'unknown',
    // Read-only look at the work tree: which code was measured.
    gitCommit: sh('git', ['rev-parse', '--short=12', 'HEAD']) || 'unknown',
    gitDirtyFiles: sh('git', ['status', '--porcelain']).split('\n').filter((l) => l.trim()).length,
  };
}

export function fmt(value: number | null | undefined, unit = ''): string {
  if (value == null || Number.isNaN(value)) return '—';
  const abs = Math.abs(value);
  const digits = Number.isInteger(value) || abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ''}`;
}

export function fmtRatio(value: number | null): string {
  return value == null || Number.isNaN(value) ? '—' : `${value.toFixed(2)}×`;
}

export function metText(met: boolean | null): string {
  return met === null ? '' : met ? 'met' : 'MISSED';
}

/** The table as plain text (what `npm run bench` prints). */
export function renderTable(rows: Row[]): string {
  const header = ['metric', 'baseline', 'deployer', 'ratio', 'goal', ''];
  const lines = rows.map((r) => [r.metric, fmt(r.baseline, r.unit), fmt(r.deployer, r.unit), fmtRatio(r.ratio), r.goal, metText(r.met)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(line)].join('\n');
}

/** The same table in Markdown (for docs/benchmarks.md). */
export function renderMarkdown(rows: Row[]): string {
  const out = ['| metric | baseline | deployer | ratio | goal | met |', '|---|---:|---:|---:|---|---|'];
  for (const r of rows) out.push(`| ${r.metric.replace(/^\s+/, '↳ ')} | ${fmt(r.baseline, r.unit)} | ${fmt(r.deployer, r.unit)} | ${fmtRatio(r.ratio)} | ${r.goal} | ${metText(r.met)} |`);
  return out.join('\n');
}

export function writeResult(outDir: string, name: string, doc: Record<string, unknown>): string {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}
