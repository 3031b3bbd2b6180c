// Scenarios whose feature does not exist yet. They are registered so that asking for
// them says so plainly; they measure nothing and write no results.
import type { Scenario } from '../lib/report.ts';

export const burst: Scenario = {
  name: 'burst',
  title: 'Burst of pushes to one pipeline (latest push wins)',
  needs: 'queue coalescing (a burst of pushes must collapse into the newest run)',
};

export const logLatency: Scenario = {
  name: 'log-latency',
  title: 'Log line latency, worker → browser',
  needs: 'live log streaming to the browser (SSE)',
};
