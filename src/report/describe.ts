import type { Config } from '../config/types.ts';
import { labelOf } from '../notify/notifier.ts';

/** What `check-config` says about reporting: where each pipeline's runs are reported (no secrets). */
export function describeReporting(config: Config): string[] {
  const lines: string[] = [];
  const how = config.github.app ? `as GitHub App ${config.github.app.id}` : config.github.token ? 'with a token (commit statuses instead of check runs)' : 'without credentials';
  for (const p of config.pipelines) {
    lines.push(`  ${p.name} reports to ${config.github.apiUrl}: ${p.report.length ? `${p.report.join(', ')} in environment "${p.environment}" ${how}` : 'nothing'}`);
  }
  lines.push(config.notify.length ? 'notify:' : 'notify: nobody');
  for (const t of config.notify) lines.push(`  ${labelOf(t)} on ${t.on.join(', ')}${t.pipelines ? ` (pipelines ${t.pipelines.join(', ')})` : ''}`);
  lines.push(`metrics: GET /metrics with ${config.metrics.token ? 'the metrics token or ' : ''}the admin token`);
  return lines;
}
