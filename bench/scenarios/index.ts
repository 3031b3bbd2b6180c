// Every scenario of `npm run bench`, in the order.
import type { Scenario } from '../lib/report.ts';
import { buildkitScenario } from './buildkit.ts';
import { contextScenario } from './context.ts';
import { deployOverhead } from './deploy-overhead.ts';
import { memory } from './memory.ts';
import { retention } from './retention.ts';
import { burst } from './burst.ts';
import { logLatency } from './log-latency.ts';
import { uiScale } from './ui-scale.ts';
import { webhookIngest } from './webhook-ingest.ts';

export const SCENARIOS: Scenario[] = [deployOverhead, webhookIngest, burst, uiScale, logLatency, memory, contextScenario, buildkitScenario, retention];
