import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunView } from '../store/run-store.ts';
import { stageSeconds } from '../report/outcome.ts';

/** What the gauges read at scrape time (the store and the drift watcher hold the truth). */
export interface MetricsSources {
  pipelines(): { name: string; services: string[] }[];
  /** Runs waiting to start, per pipeline. */
  waiting(): Map<string, number>;
  /** Services of a pipeline that run something else than recorded. */
  drifted(pipeline: string): string[];
  /** When the pipeline last succeeded (ISO), if ever. */
  lastSuccess(pipeline: string): string | undefined;
}

const TERMINAL = ['succeeded', 'failed', 'cancelled', 'superseded', 'rolled_back'] as const;

/** GitHub's webhook events, as a closed set: a label value never comes from the sender. */
const KNOWN_EVENTS = new Set(['push', 'ping', 'check_run', 'check_suite', 'pull_request', 'create', 'delete', 'release', 'workflow_run', 'status', 'deployment', 'deployment_status', 'installation', 'installation_repositories', 'issues', 'issue_comment']);

/**
 * The deployer's Prometheus metrics (prom-client), in a registry of their own (tests
 * run several daemons in one process). Counters and histograms are fed by the report
 * observer on the one applied event that finished a run (RunStore.onApplied); gauges are read from the store at scrape
 * time, so they are right after a restart too.
 */
export class DeployerMetrics {
  readonly registry = new Registry();
  readonly #runs: Counter<'pipeline' | 'status'>;
  readonly #stage: Histogram<'pipeline' | 'stage'>;
  readonly #pushToLive: Histogram<'pipeline'>;
  readonly #webhooks: Counter<'event' | 'result'>;
  readonly #probeSent: Counter<'pipeline'>;
  readonly #probeFailed: Counter<'pipeline'>;
  readonly #probeGap: Histogram<'pipeline'>;
  readonly #probeP99: Histogram<'pipeline'>;
  readonly #edge: Counter<'pipeline' | 'result'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.#runs = new Counter({ name: 'deployer_runs_total', help: 'Runs finished, by pipeline and final status.', labelNames: ['pipeline', 'status'], registers });
    this.#stage = new Histogram({
      name: 'deployer_stage_duration_seconds',
      help: 'How long each stage of a run took (fetch, build, push, deploy).',
      labelNames: ['pipeline', 'stage'],
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.#pushToLive = new Histogram({
      name: 'deployer_push_to_live_seconds',
      help: 'From the push webhook received to the new version serving, verified (successful push runs).',
      labelNames: ['pipeline'],
      buckets: [5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
      registers,
    });
    // deploy.probe and deploy.verify (issue #15): what users got during and after each rollout.
    this.#probeSent = new Counter({ name: 'deployer_probe_requests_total', help: 'Requests the downtime probe sent during rollouts (deploy.probe).', labelNames: ['pipeline'], registers });
    this.#probeFailed = new Counter({ name: 'deployer_probe_failed_requests_total', help: 'Probe requests that got no answer, none in time, or a 5xx during rollouts.', labelNames: ['pipeline'], registers });
    this.#probeGap = new Histogram({
      name: 'deployer_probe_longest_gap_seconds',
      help: 'Per rollout, the longest time the probe got no good answer (deploy.probe).',
      labelNames: ['pipeline'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    });
    this.#probeP99 = new Histogram({
      name: 'deployer_probe_p99_seconds',
      help: 'Per rollout, the 99th percentile latency of the probe\'s good answers (deploy.probe).',
      labelNames: ['pipeline'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#edge = new Counter({ name: 'deployer_edge_verifications_total', help: 'Edge verifications after a rollout (deploy.verify), by result (ok, failed).', labelNames: ['pipeline', 'result'], registers });
    this.#webhooks = new Counter({ name: 'deployer_webhooks_total', help: 'Webhook deliveries answered, by GitHub event and result.', labelNames: ['event', 'result'], registers });
    new Gauge({
      name: 'deployer_queue_waiting',
      help: 'Runs waiting to start (queued, or held by a pause), per pipeline.',
      labelNames: ['pipeline'],
      registers,
      collect() {
        const counts = sources.waiting();
        for (const p of sources.pipelines()) this.set({ pipeline: p.name }, counts.get(p.name) ?? 0);
      },
    });
    new Gauge({
      name: 'deployer_drift',
      help: '1 when the service runs something else than the deployer deployed (changed by hand), else 0.',
      labelNames: ['pipeline', 'service'],
      registers,
      collect() {
        this.reset();
        for (const p of sources.pipelines()) {
          const drifted = new Set(sources.drifted(p.name));
          for (const s of p.services) this.set({ pipeline: p.name, service: s }, drifted.has(s) ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'deployer_last_success_timestamp_seconds',
      help: 'When the pipeline last finished a run successfully (Unix time); absent if it never did.',
      labelNames: ['pipeline'],
      registers,
      collect() {
        this.reset();
        for (const p of sources.pipelines()) {
          const at = sources.lastSuccess(p.name);
          if (at) this.set({ pipeline: p.name }, Date.parse(at) / 1000);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry });
    // Every series exists from the start, so rate() and increase() see the first run.
    for (const p of sources.pipelines()) for (const status of TERMINAL) this.#runs.inc({ pipeline: p.name, status }, 0);
  }

  /** A run that just finished (called once per run). `receivedAt`: when its push webhook arrived. */
  observeRun(run: RunView, receivedAt: string | undefined): void {
    this.#runs.inc({ pipeline: run.pipeline, status: run.status });
    for (const s of run.stages) {
      if (s.status !== 'succeeded' && s.status !== 'failed' && s.status !== 'cancelled') continue;
      const secs = stageSeconds(s);
      if (secs !== undefined) this.#stage.observe({ pipeline: run.pipeline, stage: s.name }, secs);
    }
    if (run.probe) {
      this.#probeSent.inc({ pipeline: run.pipeline }, run.probe.sent);
      this.#probeFailed.inc({ pipeline: run.pipeline }, run.probe.failed);
      this.#probeGap.observe({ pipeline: run.pipeline }, run.probe.longestGapMs / 1000);
      this.#probeP99.observe({ pipeline: run.pipeline }, run.probe.p99Ms / 1000);
    }
    if (run.verify) this.#edge.inc({ pipeline: run.pipeline, result: run.verify.ok ? 'ok' : 'failed' });
    if (run.status === 'succeeded' && run.trigger === 'push' && receivedAt && run.finishedAt) {
      this.#pushToLive.observe({ pipeline: run.pipeline }, Math.max(0, (Date.parse(run.finishedAt) - Date.parse(receivedAt)) / 1000));
    }
  }

  countWebhook(event: string | undefined, result: string): void {
    this.#webhooks.inc({ event: event && KNOWN_EVENTS.has(event) ? event : 'other', result });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
