import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { errorMessage } from '../lib/errors.ts';
import { DeployerMetrics } from '../metrics/metrics.ts';
import type { DriftEntry } from '../monitor/drift.ts';
import { Notifier } from '../notify/notifier.ts';
import type { LifecycleEvent } from '../pipeline/lifecycle.ts';
import { isTerminal } from '../pipeline/states.ts';
import type { NotificationStore } from '../store/notification-store.ts';
import type { ReportStore } from '../store/report-store.ts';
import type { ReportQueries } from '../store/report-queries.ts';
import type { RunStore, RunView } from '../store/run-store.ts';
import { OctokitGitHub, type GitHubApi } from './github/octokit.ts';
import { GitHubReporter } from './github/reporter.ts';
import { integrationFields } from './view.ts';

/** Where report jobs go (the BullMQ report queue, src/queue/outbound.ts). */
export interface Outbox {
  enqueueGithub(runId: string): Promise<void>;
  enqueueNotification(id: string): Promise<void>;
}

export interface IntegrationsOptions {
  /** How often the observer looks for changes no worker event announced (ms). */
  sweepMs?: number;
  /** Octokit's own retries per request before the job is retried by the queue. */
  githubRetries?: number;
  /** Tests: a GitHub client of their own. */
  githubApi?: GitHubApi;
}

/**
 * Everything that reports runs to the outside — GitHub, chat and webhooks, Prometheus —
 * hanging off one observer on the store owner: `applied(events)` is RunStore's
 * notification of applied changes (RunStore.onApplied): called once per applied
 * transition, after its transaction committed, never for a duplicate or refused event,
 * for worker events and the store's own decisions (a waiting run superseded or
 * cancelled, a run failed by reconcile, runs recorded superseded at ingest) alike.
 * Each run that changed is read from the store and handed to the GitHub reporter and
 * the notifier, which compare with what they already queued (so a run read twice sends
 * nothing twice); metrics count a run on the one event that finished it. A sweep every
 * few seconds does what no run event announces: drift, GitHub reports still open after
 * a restart, queueing again what is pending (jobs lost while Redis was away), pruning.
 * Nothing here can throw into the store, block it, or touch a run.
 */
export class Integrations {
  readonly metrics: DeployerMetrics;
  readonly reports: ReportStore;
  readonly notifications: NotificationStore;
  readonly #config: Config;
  readonly #store: RunStore;
  readonly #queries: ReportQueries;
  readonly #github: GitHubReporter | undefined;
  readonly #notifier: Notifier;
  readonly #driftOf: (pipeline: string) => DriftEntry[] | null;
  readonly #log: Logger;
  readonly #sweepMs: number;
  readonly #changed = new Set<string>();
  /** Runs whose start was applied since the last look (a start and an end applied together still announce the start). */
  readonly #started = new Set<string>();
  #outbox: Outbox | undefined;
  #flushScheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #sweeps = 0;

  constructor(opts: { config: Config; store: RunStore; driftOf: (pipeline: string) => DriftEntry[] | null; log: Logger } & IntegrationsOptions) {
    this.#config = opts.config;
    this.#store = opts.store;
    this.#driftOf = opts.driftOf;
    this.#log = opts.log.child({ component: 'reports' });
    this.#sweepMs = opts.sweepMs ?? 5_000;
    this.reports = opts.store.reports;
    this.notifications = opts.store.notifications;
    this.#queries = opts.store.reportQueries;
    const outbox = (): Outbox => {
      if (!this.#outbox) throw new Error('report queue not attached');
      return this.#outbox;
    };
    const reporting = opts.config.pipelines.some((p) => p.report.length > 0);
    if (reporting) {
      this.#github = new GitHubReporter({
        config: opts.config,
        reports: this.reports,
        api: opts.githubApi ?? new OctokitGitHub(opts.config.github, opts.config.github.token, this.#log, { retries: opts.githubRetries ?? 2 }),
        enqueue: (runId) => outbox().enqueueGithub(runId),
        log: this.#log,
      });
    }
    this.#notifier = new Notifier({ config: opts.config, store: this.notifications, queries: this.#queries, enqueue: (id) => outbox().enqueueNotification(id), log: this.#log });
    this.metrics = new DeployerMetrics({
      pipelines: () => opts.config.pipelines.map((p) => ({ name: p.name, services: p.services })),
      waiting: () => this.#queries.waitingCounts(),
      drifted: (p) => (this.#driftOf(p) ?? []).map((d) => d.service),
      lastSuccess: (p) => this.#queries.lastSuccessAt(p),
    });
  }

  /** The report queue's job handlers. */
  get handlers() {
    return {
      github: (runId: string, lastAttempt: boolean) => this.#github?.sync(runId, lastAttempt) ?? Promise.resolve(),
      notify: (id: string, lastAttempt: boolean) => this.#notifier.deliver(id, lastAttempt),
    };
  }

  attach(outbox: Outbox): void {
    this.#outbox = outbox;
  }

  /**
   * The store applied these changes (RunStore.onApplied: once each, after the commit).
   * A run's finishing event is counted in the metrics at once, exactly once; the runs
   * that changed are looked at once per turn of the event loop (log lines change
   * nothing here).
   */
  applied(events: readonly LifecycleEvent[]): void {
    for (const e of events) {
      if (e.type === 'log') continue;
      this.#changed.add(e.runId);
      if (e.type === 'run.started') this.#started.add(e.runId);
      // No event applies to a finished run (except its worker's last log lines), so the
      // event that finished it is applied once: the run is counted once.
      if (e.type === 'store.finished' || (e.type === 'run.finished' && isTerminal(e.status))) this.#countFinished(e.runId);
    }
    if (this.#changed.size === 0 || this.#flushScheduled) return;
    // Once per turn of the event loop: a batch of events for one run is one look.
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const ids = [...this.#changed];
      const started = new Set(this.#started);
      this.#changed.clear();
      this.#started.clear();
      for (const id of ids) this.#observeId(id, started.has(id));
    });
  }

  #countFinished(runId: string): void {
    this.#guard(() => {
      const run = this.#store.getRun(runId);
      if (!run) return;
      const receivedAt = run.deliveryId ? (this.#queries.deliveryReceivedAt(run.deliveryId) ?? run.createdAt) : run.createdAt;
      this.metrics.observeRun(run, receivedAt);
    }, runId);
  }

  start(): void {
    const tick = () => {
      try {
        this.sweep();
      } catch (err) {
        this.#log.warn({ err: { message: errorMessage(err) } }, 'report sweep failed');
      }
    };
    tick();
    this.#timer = setInterval(tick, this.#sweepMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /**
   * Looks at what no run event announces: drift; GitHub reports still open (a restart
   * between a change and its look, or reports a GitHub outage held back); now and then
   * queues again what is pending (jobs lost while Redis was away) and prunes.
   */
  sweep(): void {
    if (this.#github) for (const id of this.reports.openReports()) this.#observeId(id);
    for (const p of this.#config.pipelines) {
      const drift = this.#driftOf(p.name);
      if (drift) this.#guard(() => this.#notifier.observeDrift(p.name, drift), p.name);
    }
    this.#sweeps++;
    if (this.#sweeps % 6 === 1) {
      this.#guard(() => this.#github?.requeuePending(), 'requeue');
      this.#guard(() => this.#notifier.requeuePending(), 'requeue');
    }
    if (this.#sweeps % 720 === 0) {
      this.#guard(() => {
        this.notifications.prune(90 * 86_400_000);
        this.reports.pruneAttempts();
      }, 'prune');
    }
  }

  /** What the pipeline API and page show about reports and notifications. */
  pipelineFields(pipeline: string) {
    return integrationFields(this.reports, this.notifications, pipeline);
  }

  #observeId(runId: string, started = false): void {
    let run: RunView | undefined;
    try {
      run = this.#store.getRun(runId);
    } catch (err) {
      this.#log.warn({ run: runId, err: { message: errorMessage(err) } }, 'could not read a run to report it');
      return;
    }
    if (run) this.observe(run, started);
  }

  /** Hands one run to each reporter; a failure in one never stops the others. */
  observe(run: RunView, started = false): void {
    if (this.#github) this.#guard(() => this.#github!.observe(run), run.id);
    this.#guard(() => this.#notifier.observe(run, started), run.id);
  }

  #guard(fn: () => void, what: string): void {
    try {
      fn();
    } catch (err) {
      this.#log.warn({ subject: what, err: { message: errorMessage(err) } }, 'reporting a change failed');
    }
  }
}
