import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DeployerMetrics } from '../../src/metrics/metrics.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

/** What the daemon exports, by name (histograms with their _bucket/_sum/_count). */
async function exportedNames(): Promise<Set<string>> {
  const m = new DeployerMetrics({
    pipelines: () => [{ name: 'www', services: ['infra_www'] }],
    waiting: () => new Map([['www', 1]]),
    drifted: () => ['infra_www'],
    lastSuccess: () => '2025-01-01T00:00:00.000Z',
  });
  const names = new Set<string>();
  for (const [, name, type] of (await m.text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
    else names.add(name!);
  }
  return names;
}

describe('shipped Prometheus alert rules and Grafana dashboard', () => {
  it('the alert rules are valid (promtool check rules) and each fires when it should (promtool test rules)', async () => {
    const check = await run('promtool', ['check', 'rules', join(root, 'docs', 'prometheus-alerts.yml')]);
    expect(check.stdout).toMatch(/SUCCESS: 5 rules found/);
    const test = await run('promtool', ['test', 'rules', join(root, 'test', 'support', 'prometheus-alerts.test.yml')]);
    expect(test.stdout).toMatch(/SUCCESS/);
  });

  it('the alert rules and the dashboard only use metrics the deployer exports', async () => {
    const names = await exportedNames();
    for (const contract of ['deployer_runs_total', 'deployer_stage_duration_seconds_bucket', 'deployer_push_to_live_seconds_bucket', 'deployer_queue_waiting', 'deployer_webhooks_total', 'deployer_drift', 'deployer_last_success_timestamp_seconds', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(names, contract).toContain(contract);
    }
    const dashboard = JSON.parse(readFileSync(join(root, 'docs', 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[]; templating: { list: { query?: unknown }[] } };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const rules = readFileSync(join(root, 'docs', 'prometheus-alerts.yml'), 'utf8');
    const used = new Set([...exprs.join('\n').matchAll(/\b((?:deployer|process|nodejs)_[a-z_0-9]+)/g), ...rules.matchAll(/\b(deployer_[a-z_0-9]+)/g)].map((m) => m[1]!));
    expect(used.size).toBeGreaterThan(8);
    for (const name of used) expect(names, `${name} is used but not exported`).toContain(name);

    // Every panel's query is valid PromQL: checked by promtool as recording rules, with
    // Grafana's variables replaced as Grafana would.
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-'));
    try {
      const lines = ['groups:', '  - name: dashboard', '    rules:'];
      exprs.forEach((e, i) => {
        const promql = e.replace(/\$__rate_interval/g, '5m').replace(/\$__range/g, '1h').replace(/\$(pipeline|job)/g, '.*');
        lines.push(`      - record: dashboard:panel_${i}`, `        expr: ${JSON.stringify(promql)}`);
      });
      writeFileSync(join(dir, 'rules.yml'), `${lines.join('\n')}\n`);
      const res = await run('promtool', ['check', 'rules', join(dir, 'rules.yml')]);
      expect(res.stdout).toMatch(new RegExp(`SUCCESS: ${exprs.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
