import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { LifecycleEvent } from '../pipeline/lifecycle.ts';
import type { RunEvent } from '../pipeline/events.ts';
import type { RunStatus } from '../pipeline/states.ts';
import { DeploymentRepository, type DeploymentView } from './deployments.ts';
import { EventLog, type BatchOutcome, type StreamEntry } from './event-log.ts';
import { LogRepository, type LogChunkView } from './logs.ts';
import { PauseRepository, type PauseView } from './pauses.ts';
import { Retention } from './retention.ts';
import { AuditStore } from './audit-store.ts';
import { RunQueries } from './run-queries.ts';
import { SessionStore } from './session-store.ts';
import { NotificationStore } from './notification-store.ts';
import { ReportQueries } from './report-queries.ts';
import { ReportStore } from './report-store.ts';
import { RunRepository, type DeliveryOutcome, type NewRun, type PushDelivery, type RecordedPushes, type RunView } from './runs.ts';
import { Sql, text } from './sql.ts';

export type { DeploymentView } from './deployments.ts';
export type { BatchOutcome, IgnoredEvent, SetAsideEvent, StreamEntry } from './event-log.ts';
export type { LogChunkView } from './logs.ts';
export type { PauseView } from './pauses.ts';
export type { DeliveryOutcome, NewRun, PushDelivery, RecordedAnswer, RecordedPushes, RunView, ServiceDeployView, StageView, WaitingRun } from './runs.ts';

type AppliedListener = (events: LifecycleEvent[]) => void;

/**
 * The store, as the rest of the daemon sees it: one object over the repositories that
 * each own one concern — runs and deliveries (runs.ts), worker events applied through
 * the run lifecycle (event-log.ts), logs (logs.ts), deployments (deployments.ts),
 * pauses (pauses.ts) and retention (retention.ts). Only the process that owns the store
 * uses it. Every change of a run's state goes through the lifecycle, whether a worker
 * reported it or the store decided it (`finish`); listeners added with `onApplied` hear
 * about each change, whichever path made it.
 */
export class RunStore {
  readonly #sql: Sql;
  readonly #runs: RunRepository;
  readonly #logs: LogRepository;
  readonly #deployments: DeploymentRepository;
  readonly #pauses: PauseRepository;
  readonly #retention: Retention;
  readonly #events: EventLog;
  readonly #listeners: AppliedListener[] = [];
  /** This store's id: names the event stream its workers report to. Made once, kept in the store. */
  readonly id: string;
  /** The console's own tables: sign-in sessions, the audit log, and run lists across pipelines. */
  readonly sessions: SessionStore;
  readonly audit: AuditStore;
  readonly queries: RunQueries;
  /** The reporting tables: GitHub report outbox, notifications, and what the reporters read about runs. */
  readonly reports: ReportStore;
  readonly notifications: NotificationStore;
  readonly reportQueries: ReportQueries;

  constructor(db: DatabaseSync, opts: { maxEventAttempts?: number } = {}) {
    this.#sql = new Sql(db);
    this.#runs = new RunRepository(this.#sql);
    this.#logs = new LogRepository(this.#sql);
    this.#deployments = new DeploymentRepository(this.#sql);
    this.#pauses = new PauseRepository(this.#sql);
    this.#retention = new Retention(this.#sql);
    this.#events = new EventLog({ sql: this.#sql, runs: this.#runs, logs: this.#logs, deployments: this.#deployments, ...(opts.maxEventAttempts ? { maxAttempts: opts.maxEventAttempts } : {}) });
    this.sessions = new SessionStore(db);
    this.audit = new AuditStore(db);
    this.queries = new RunQueries(db, this);
    this.reports = new ReportStore(db);
    this.notifications = new NotificationStore(db);
    this.reportQueries = new ReportQueries(db);
    this.id = this.#sql.transaction(() => {
      const row = this.#sql.get("SELECT value FROM store_meta WHERE key = 'id'");
      if (row) return text(row, 'value');
      const id = randomBytes(6).toString('hex');
      this.#sql.run("INSERT INTO store_meta (key, value) VALUES ('id', ?)", id);
      return id;
    });
  }

  // ---- runs and deliveries (runs.ts)
  createRuns(runs: NewRun[], delivery?: { id: string; event: string }): RunView[] {
    return this.#runs.createRuns(runs, delivery);
  }
  recordPushes(pushes: PushDelivery[]): RecordedPushes {
    return this.#runs.recordPushes(pushes);
  }
  findDelivery(id: string): DeliveryOutcome | undefined {
    return this.#runs.findDelivery(id);
  }
  forgetRuns(ids: readonly string[], deliveryIds: readonly string[] = []): void {
    this.#runs.forgetRuns(ids, deliveryIds);
  }
  getRun(id: string): RunView | undefined {
    return this.#runs.getRun(id);
  }
  listRuns(pipeline: string, limit: number, before?: number): { runs: RunView[]; next: number | null } {
    return this.#runs.listRuns(pipeline, limit, before);
  }
  lastRun(pipeline: string): RunView | undefined {
    return this.#runs.lastRun(pipeline);
  }
  runsWithStatus(statuses: RunStatus[]): RunView[] {
    return this.#runs.runsWithStatus(statuses);
  }
  queuedRuns(pipeline: string): RunView[] {
    return this.#runs.queuedRuns(pipeline);
  }
  queuedRunIdsBefore(pipeline: string, beforeId: string): string[] {
    return this.#runs.queuedRunIdsBefore(pipeline, beforeId);
  }
  activeRuns(pipeline: string): RunView[] {
    return this.#runs.activeRuns(pipeline);
  }
  statusesForCommit(pipeline: string, commit: string): RunStatus[] {
    return this.#runs.statusesForCommit(pipeline, commit);
  }
  statusOf(id: string): RunStatus | undefined {
    return this.#runs.statusOf(id);
  }
  requestCancel(id: string, by: string): void {
    this.#runs.requestCancel(id, by);
  }
  supersededBy(id: string): string | null {
    return this.#runs.supersededBy(id);
  }

  // ---- state changes, through the run lifecycle (event-log.ts)
  /** Applies a batch of worker events read from `stream`, exactly once (see EventLog). */
  applyBatch(stream: string, entries: readonly StreamEntry[]): BatchOutcome {
    const outcome = this.#events.applyBatch(stream, entries);
    this.#notify(outcome.applied);
    return outcome;
  }
  /** Applies one worker event on its own; false when the lifecycle turned it down. */
  apply(event: RunEvent): boolean {
    const verdict = this.#events.apply(event);
    if (verdict.applied) this.#notify([event]);
    return verdict.applied;
  }
  /** Ends a run that never started (or whose worker is gone) from the store's side. */
  finish(id: string, status: 'cancelled' | 'superseded' | 'failed', error: string, supersededBy?: string): boolean {
    const event: LifecycleEvent = { type: 'store.finished', runId: id, status, at: new Date().toISOString(), error, ...(supersededBy ? { supersededBy } : {}) };
    const verdict = this.#events.apply(event);
    if (verdict.applied) this.#notify([event]);
    return verdict.applied;
  }
  /**
   * Push ingest kept a recorded batch (its runs are queued): listeners now hear of the
   * runs it recorded as superseded already (latest push wins at ingest). Those were
   * born finished, with no transition through the lifecycle, yet they are finished runs
   * all the same (metrics count them). Said only once the batch is kept, because a
   * batch whose runs could not be queued is forgotten.
   */
  announceRecorded(recorded: RecordedPushes): void {
    this.#notify(recorded.superseded.map((r): LifecycleEvent => ({ type: 'store.finished', runId: r.id, status: 'superseded', at: r.at, error: `superseded by ${r.supersededBy}`, supersededBy: r.supersededBy })));
  }
  /** Hears every applied change of a run, from workers' events and from the store's own decisions. */
  onApplied(listener: AppliedListener): void {
    this.#listeners.push(listener);
  }
  lastAppliedEvent(stream: string): string | undefined {
    return this.#events.lastApplied(stream);
  }
  setAsideEvents(): number {
    return this.#events.setAsideCount();
  }

  // ---- logs (logs.ts)
  logTail(runId: string, maxLines: number): { text: string; totalLines: number; shownLines: number } {
    return this.#logs.logTail(runId, maxLines);
  }
  lastLogSeq(runId: string): number {
    return this.#logs.lastLogSeq(runId);
  }
  logChunksAfter(runId: string, afterSeq: number, limit = 1000): LogChunkView[] {
    return this.#logs.logChunksAfter(runId, afterSeq, limit);
  }
  logTailStart(runId: string, maxLines: number): number {
    return this.#logs.logTailStart(runId, maxLines);
  }
  logChunks(runId: string): Generator<string> {
    return this.#logs.logChunks(runId);
  }

  // ---- deployments (deployments.ts)
  currentDeployment(pipeline: string): DeploymentView | undefined {
    return this.#deployments.currentDeployment(pipeline);
  }
  currentDeployments(pipeline: string): DeploymentView[] {
    return this.#deployments.currentDeployments(pipeline);
  }
  deployments(pipeline: string, limit = 100): DeploymentView[] {
    return this.#deployments.deployments(pipeline, limit);
  }
  getDeployment(id: string): DeploymentView | undefined {
    return this.#deployments.getDeployment(id);
  }

  // ---- pauses and retention (pauses.ts, retention.ts)
  pause(pipeline: string, reason: string, by: string): void {
    this.#pauses.pause(pipeline, reason, by);
  }
  resume(pipeline: string): void {
    this.#pauses.resume(pipeline);
  }
  pauseOf(pipeline: string): PauseView | undefined {
    return this.#pauses.pauseOf(pipeline);
  }
  prune(pipeline: string, keep: number, maxAgeMs: number): number {
    return this.#retention.prune(pipeline, keep, maxAgeMs);
  }
  /** One bounded step of retention (see Retention): the daemon yields to the event loop between steps. */
  pruneBatch(pipeline: string, keep: number, maxAgeMs: number, limit: number): number {
    return this.#retention.pruneBatch(pipeline, keep, maxAgeMs, limit);
  }
  forgetOrphanedEvents(): number {
    return this.#retention.forgetOrphans();
  }
  pruneDeliveriesBatch(maxAgeMs: number, limit: number): number {
    return this.#retention.pruneDeliveriesBatch(maxAgeMs, limit);
  }

  /** Throws unless the database answers (health check). */
  ping(): void {
    this.#sql.get('SELECT 1 AS ok');
  }
  close(): void {
    this.#sql.close();
  }

  #notify(events: LifecycleEvent[]): void {
    if (events.length === 0) return;
    // A listener's failure is its own: the change is stored either way.
    for (const l of this.#listeners) {
      try {
        l(events);
      } catch {
        /* listeners report their own failures */
      }
    }
  }
}
