// Scenarios whose feature does not exist yet. They are registered so that asking for
// them says so plainly; they measure nothing and write no results.
import type { Scenario } from '../lib/report.ts';

export const logLatency: Scenario = {
  name: 'log-latency',
  title: 'Log line latency, worker → browser',
  needs: 'live log streaming to the browser (SSE)',
};
