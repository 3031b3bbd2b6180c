import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../bench/scenarios/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Runs `node bench/run.ts …` from the repository root; kills it after `timeoutMs`. */
function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bench/run.ts', ...args], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * The benchmarks are not part of the test run, but their smoke mode is: every
 * implemented scenario runs once at a tiny size, so the benchmark code cannot rot.
 * Figures are not asserted (they are measured against baselines, not limits).
 */
describe('benchmarks in smoke mode (node bench/run.ts --quick)', () => {
  const out = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs every scenario once and writes its JSON', async () => {
    // A generous bound, not a goal: on a quiet machine the smoke run takes about 2 minutes.
    const { code, output } = await runBench(['--quick', '--out', out], 420_000);
    expect(code, output).toBe(0);
    expect(SCENARIOS.map((s) => s.name)).toEqual(['deploy-overhead', 'webhook-ingest', 'burst', 'ui-scale', 'log-latency', 'memory', 'context', 'buildkit', 'retention']);
    for (const s of SCENARIOS) {
      const file = join(out, `${s.name}.json`);
      expect(existsSync(file), `${s.name}.json missing\n${output}`).toBe(true);
      const doc = JSON.parse(readFileSync(file, 'utf8'));
      expect(doc).toMatchObject({ scenario: s.name, mode: 'quick' });
      expect(doc.rows.length).toBeGreaterThan(0);
      for (const row of doc.rows) expect(typeof row.metric).toBe('string');
    }
    // log-latency measured real lines through the SSE path, none lost.
    const lat = JSON.parse(readFileSync(join(out, 'log-latency.json'), 'utf8'));
    const lost = lat.rows.find((r: { metric: string }) => r.metric.startsWith('lines lost'));
    expect(lost.deployer).toBe(0);
    // BuildKit: the slow steps of the fresh-host rebuild really came from the registry's cache.
    const bk = JSON.parse(readFileSync(join(out, 'buildkit.json'), 'utf8'));
    expect(bk.rows.find((r: { metric: string }) => r.metric.includes('came from the registry cache')).met).toBe(true);
  }, 430_000);

  it('refuses an unknown scenario by name, measuring nothing', async () => {
    const { code, output } = await runBench(['no-such-scenario', '--out', out], 30_000);
    expect(code, output).toBe(2);
    expect(output).toMatch(/unknown scenario\(s\): no-such-scenario; known: deploy-overhead, /);
    expect(existsSync(join(out, 'no-such-scenario.json'))).toBe(false);
  }, 60_000);
});
