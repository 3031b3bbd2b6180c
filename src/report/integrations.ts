import type { DatabaseSync } from 'node:sqlite';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { errorMessage } from '../lib/errors.ts';
import { DeployerMetrics } from '../metrics/metrics.ts';
import type { DriftEntry } from '../monitor/drift.ts';
import { Notifier } from '../notify/notifier.ts';
import type { RunEvent } from '../pipeline/events.ts';
import { isTerminal } from '../pipeline/states.ts';
import { NotificationStore } from '../store/notification-store.ts';
import { ReportStore } from '../store/report-store.ts';
import { ReportQueries } from '../store/report-queries.ts';
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

const SETTLED_KEEP_MS = 15 * 60_000;

/**
 * Everything that reports runs to the outside — GitHub, chat and webhooks, Prometheus —
 * hanging off one observer on the store owner: `applied(events)` is called after the
 * event consumer applied worker events, and a sweep (every few seconds) covers what the
 * store changed by itself (a waiting run superseded or cancelled, a run failed by
 * reconcile) and drift. Each run that changed is read from the store and handed to the
 * GitHub reporter, the notifier and the metrics, which compare with what they already
 * did: a repeated or missed nudge costs nothing. Nothing here can throw into the
 * consumer, block it, or touch a run.
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
  /** Where the sweep's look at finished runs resumes: runs finished before this process started are not news. */
  #cursor = { at: new Date().toISOString(), seq: 0 };
  /** Runs already seen finished (counted in metrics), with when: a sweep skips them. */
  readonly #settled = new Map<string, number>();
  readonly #changed = new Set<string>();
  #outbox: Outbox | undefined;
  #flushScheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #sweeps = 0;

  constructor(opts: { config: Config; db: DatabaseSync; store: RunStore; driftOf: (pipeline: string) => DriftEntry[] | null; log: Logger } & IntegrationsOptions) {
    this.#config = opts.config;
    this.#store = opts.store;
    this.#driftOf = opts.driftOf;
    this.#log = opts.log.child({ component: 'reports' });
    this.#sweepMs = opts.sweepMs ?? 5_000;
    this.reports = new ReportStore(opts.db);
    this.notifications = new NotificationStore(opts.db);
    this.#queries = new ReportQueries(opts.db);
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

  /** The store owner applied these worker events: look at the runs they changed (log lines change nothing here). */
  applied(events: RunEvent | RunEvent[]): void {
    for (const e of Array.isArray(events) ? events : [events]) if (e.type !== 'log') this.#changed.add(e.runId);
    if (this.#changed.size === 0 || this.#flushScheduled) return;
    // Once per turn of the event loop: a batch of events for one run is one look.
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const ids = [...this.#changed];
      this.#changed.clear();
      for (const id of ids) this.#observeId(id);
    });
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
   * Looks at what no event announced: runs finished lately (since this process started)
   * and not seen finished yet, runs GitHub still shows as in progress, drift; now and
   * then queues again what is pending (jobs lost while Redis was away) and prunes.
   */
  sweep(): void {
    const now = Date.now();
    // Runs finished since the last sweep, page by page (a burst of pushes ends thousands
    // of runs superseded at ingest: those only need counting, not a full read).
    for (let page = 0; page < 20; page++) {
      const rows = this.#queries.finishedAfter(this.#cursor);
      for (const r of rows) {
        this.#cursor = { at: r.finishedAt, seq: r.seq };
        if (this.#settled.has(r.id)) continue;
        if (r.status === 'superseded' && !r.started) {
          this.#settled.set(r.id, now);
          this.#guard(() => this.metrics.countRun(r.pipeline, r.status), r.id);
        } else {
          this.#observeId(r.id);
        }
      }
      if (rows.length < 1000) break;
    }
    if (this.#github) for (const id of this.reports.openReports()) if (!this.#settled.has(id)) this.#observeId(id);
    for (const p of this.#config.pipelines) {
      const drift = this.#driftOf(p.name);
      if (drift) this.#guard(() => this.#notifier.observeDrift(p.name, drift), p.name);
    }
    for (const [id, at] of this.#settled) if (now - at > SETTLED_KEEP_MS) this.#settled.delete(id);
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

  #observeId(runId: string): void {
    let run: RunView | undefined;
    try {
      run = this.#store.getRun(runId);
    } catch (err) {
      this.#log.warn({ run: runId, err: { message: errorMessage(err) } }, 'could not read a run to report it');
      return;
    }
    if (run) this.observe(run);
  }

  /** Hands one run to each reporter; a failure in one never stops the others. */
  observe(run: RunView): void {
    if (this.#github) this.#guard(() => this.#github!.observe(run), run.id);
    this.#guard(() => this.#notifier.observe(run), run.id);
    if (isTerminal(run.status) && !this.#settled.has(run.id)) {
      this.#settled.set(run.id, Date.now());
      this.#guard(() => this.metrics.observeRun(run, run.deliveryId ? (this.#queries.deliveryReceivedAt(run.deliveryId) ?? run.createdAt) : run.createdAt), run.id);
    }
  }

  #guard(fn: () => void, what: string): void {
    try {
      fn();
    } catch (err) {
      this.#log.warn({ subject: what, err: { message: errorMessage(err) } }, 'reporting a change failed');
    }
  }
}
