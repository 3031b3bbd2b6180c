import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { RunEvent } from '../pipeline/events.ts';
import { canTransitionRun, canTransitionStage, STAGE_NAMES, type RunStatus, type StageName, type StageStatus, type Trigger } from '../pipeline/states.ts';
import { transaction } from './db.ts';
import { newId } from './ids.ts';

export interface StageView {
  name: StageName;
  status: StageStatus;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

export interface RunView {
  id: string;
  pipeline: string;
  commit: string | null;
  subject: string | null;
  author: string | null;
  status: RunStatus;
  trigger: Trigger;
  stages: StageView[];
  image: { ref: string; digest: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  deliveryId: string | null;
  requestedBy: string | null;
  attempts: number;
  /** The run that replaced this one (status superseded). */
  supersededBy: string | null;
  /** host-pid of the worker that ran it (last attempt). */
  worker: string | null;
  /** Rollback runs: the pinned image redeployed without building. */
  targetImage: string | null;
  /** How each service's deploy ended: succeeded, rolled_back, failed or timed_out. */
  deploys: ServiceDeployView[];
}

export interface ServiceDeployView {
  service: string;
  outcome: string;
  previousImage: string | null;
  image: string | null;
  taskErrors: string[];
  message: string;
  at: string;
}

export interface DeploymentView {
  id: string;
  pipeline: string;
  service: string;
  image: string;
  digest: string;
  commit: string;
  runId: string;
  deployedAt: string;
  replacedAt: string | null;
}

export interface NewRun {
  pipeline: string;
  trigger: Trigger;
  commit: string | null;
  /** Rollback runs: the pinned image to deploy instead of building. */
  targetImage?: string;
  subject?: string;
  author?: string;
  deliveryId?: string;
  requestedBy?: string;
}

export interface LogChunkView {
  seq: number;
  stage: StageName | null;
  lines: number;
  text: string;
}

export type DeliveryOutcome = { runs: string[] } | { ignored: string };

/** One push delivery and the runs it asks for (one per matching pipeline). */
export interface PushDelivery {
  id: string;
  event: string;
  runs: NewRun[];
}

/** A run left waiting for a queue slot: what enqueueing it needs. */
export interface WaitingRun {
  id: string;
  pipeline: string;
  commit: string | null;
}

/**
 * A delivery's answer: the runs it created, or the outcome recorded for its id before
 * the batch (`recordedBefore`) or by an earlier delivery of the batch (not `firstSeen`).
 */
export interface RecordedAnswer {
  outcome: DeliveryOutcome;
  recordedBefore: boolean;
  firstSeen: boolean;
}

export interface RecordedPushes {
  /** Per delivery, in order. */
  answers: RecordedAnswer[];
  /** Per pipeline, the newest run of the batch: the only one left queued. */
  newest: WaitingRun[];
  /** Everything the batch wrote, so it can be forgotten if its runs cannot be queued. */
  runIds: string[];
  deliveryIds: string[];
}

interface RunRow {
  id: string;
  pipeline: string;
  trigger: Trigger;
  status: RunStatus;
  commit_sha: string | null;
  commit_subject: string | null;
  commit_author: string | null;
  delivery_id: string | null;
  requested_by: string | null;
  image_ref: string | null;
  image_digest: string | null;
  error: string | null;
  attempts: number;
  worker: string | null;
  target_image: string | null;
  superseded_by: string | null;
  cancel_requested: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  seq: number;
}

/**
 * The store's one writer-facing API. Only the process that owns the store uses it:
 * HTTP handlers create runs, and the event applier turns worker events into rows.
 */
export class RunStore {
  readonly #db: DatabaseSync;
  /** Prepared once per SQL text: preparing costs more than most of these queries. */
  readonly #statements = new Map<string, StatementSync>();
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #sql(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  get db(): DatabaseSync {
    return this.#db;
  }

  /** Creates runs (and the delivery that caused them) atomically. */
  createRuns(runs: NewRun[], delivery?: { id: string; event: string }): RunView[] {
    const now = new Date().toISOString();
    const ids = transaction(this.#db, () => {
      const created: string[] = [];
      for (const r of runs) {
        const id = newId('r');
        this.#insertRun(id, r, now);
        created.push(id);
      }
      if (delivery) this.#recordDelivery(delivery.id, delivery.event, { runs: created }, now);
      return created;
    });
    return ids.map((id) => this.getRun(id)!);
  }

  /**
   * Records a batch of push deliveries and their runs in one transaction. A delivery
   * id recorded before, or earlier in the same batch, creates nothing and gets the
   * recorded outcome. Latest push wins already here: of each pipeline's new runs only
   * the last one stays queued; the older ones are recorded as superseded by it (they
   * would have been superseded before starting anyway, and need no queue slot).
   */
  recordPushes(pushes: PushDelivery[]): RecordedPushes {
    const now = new Date().toISOString();
    return transaction(this.#db, () => {
      const answers: RecordedAnswer[] = [];
      const inBatch = new Map<string, RecordedAnswer>();
      const fresh: { id: string; run: NewRun }[] = [];
      const deliveryIds: string[] = [];
      for (const push of pushes) {
        const earlier = inBatch.get(push.id);
        if (earlier) {
          answers.push({ ...earlier, firstSeen: false });
          continue;
        }
        const before = this.findDelivery(push.id);
        let answer: RecordedAnswer;
        if (before) {
          answer = { outcome: before, recordedBefore: true, firstSeen: false };
        } else {
          const ids = push.runs.map((run) => {
            const id = newId('r');
            fresh.push({ id, run });
            return id;
          });
          answer = { outcome: { runs: ids }, recordedBefore: false, firstSeen: true };
          this.#recordDelivery(push.id, push.event, answer.outcome, now);
          deliveryIds.push(push.id);
        }
        inBatch.set(push.id, answer);
        answers.push(answer);
      }
      const newest = new Map<string, WaitingRun>();
      for (const { id, run } of fresh) newest.set(run.pipeline, { id, pipeline: run.pipeline, commit: run.commit });
      for (const { id, run } of fresh) {
        const winner = newest.get(run.pipeline)!.id;
        this.#insertRun(id, run, now, winner === id ? undefined : winner);
      }
      return { answers, newest: [...newest.values()], runIds: fresh.map((f) => f.id), deliveryIds };
    });
  }

  /** A new run, queued, or (with `supersededBy`) already superseded with its stages skipped. */
  #insertRun(id: string, r: NewRun, now: string, supersededBy?: string): void {
    const superseded = supersededBy !== undefined;
    this.#sql(
      `INSERT INTO runs (id, pipeline, trigger, status, commit_sha, commit_subject, commit_author, delivery_id, requested_by, target_image, created_at, finished_at, error, superseded_by)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      id, r.pipeline, r.trigger, superseded ? 'superseded' : 'queued', r.commit, r.subject ?? null, r.author ?? null, r.deliveryId ?? null, r.requestedBy ?? null,
      r.targetImage ?? null, now, superseded ? now : null, superseded ? `superseded by ${supersededBy}` : null, supersededBy ?? null,
    );
    const insertStage = this.#sql('INSERT INTO stages (run_id, position, name, status, finished_at) VALUES (?, ?, ?, ?, ?)');
    STAGE_NAMES.forEach((name, i) => insertStage.run(id, i, name, superseded ? 'skipped' : 'pending', superseded ? now : null));
  }

  recordDelivery(id: string, event: string, outcome: DeliveryOutcome): void {
    this.#recordDelivery(id, event, outcome, new Date().toISOString());
  }

  #recordDelivery(id: string, event: string, outcome: DeliveryOutcome, at: string): void {
    this.#sql('INSERT OR IGNORE INTO deliveries (id, event, received_at, outcome) VALUES (?, ?, ?, ?)').run(id, event, at, JSON.stringify(outcome));
  }

  findDelivery(id: string): DeliveryOutcome | undefined {
    const row = this.#sql('SELECT outcome FROM deliveries WHERE id = ?').get(id) as { outcome: string } | undefined;
    return row ? (JSON.parse(row.outcome) as DeliveryOutcome) : undefined;
  }

  /** Undoes createRuns/recordPushes when the runs could not be queued, so a redelivery starts afresh. */
  forgetRuns(ids: readonly string[], deliveryIds: readonly string[] = []): void {
    transaction(this.#db, () => {
      for (const id of ids) this.#sql('DELETE FROM runs WHERE id = ?').run(id);
      for (const id of deliveryIds) this.#sql('DELETE FROM deliveries WHERE id = ?').run(id);
    });
  }

  getRun(id: string): RunView | undefined {
    const row = this.#sql('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    return row ? this.#view(row) : undefined;
  }

  /** Newest first; `before` is the opaque cursor returned as `next`. */
  listRuns(pipeline: string, limit: number, before?: number): { runs: RunView[]; next: number | null } {
    const rows = (
      before === undefined
        ? this.#sql('SELECT * FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT ?').all(pipeline, limit + 1)
        : this.#sql('SELECT * FROM runs WHERE pipeline = ? AND seq < ? ORDER BY seq DESC LIMIT ?').all(pipeline, before, limit + 1)
    ) as unknown as RunRow[];
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    return { runs: page.map((r) => this.#view(r)), next: more ? page[page.length - 1]!.seq : null };
  }

  lastRun(pipeline: string): RunView | undefined {
    const row = this.#sql('SELECT * FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT 1').get(pipeline) as RunRow | undefined;
    return row ? this.#view(row) : undefined;
  }

  runsWithStatus(statuses: RunStatus[]): RunView[] {
    const rows = this.#sql(`SELECT * FROM runs WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY seq`)
      .all(...statuses) as unknown as RunRow[];
    return rows.map((r) => this.#view(r));
  }

  /** The deployment currently serving (latest, on any of the pipeline's services). */
  currentDeployment(pipeline: string): DeploymentView | undefined {
    const row = this.#sql('SELECT * FROM deployments WHERE pipeline = ? AND replaced_at IS NULL ORDER BY seq DESC LIMIT 1')
      .get(pipeline) as Record<string, string> | undefined;
    return row ? deploymentView(row) : undefined;
  }

  /** What each service of the pipeline runs according to our records. */
  currentDeployments(pipeline: string): DeploymentView[] {
    const rows = this.#sql('SELECT * FROM deployments WHERE pipeline = ? AND replaced_at IS NULL ORDER BY seq').all(pipeline) as Record<string, string>[];
    return rows.map(deploymentView);
  }

  deployments(pipeline: string, limit = 100): DeploymentView[] {
    const rows = this.#sql('SELECT * FROM deployments WHERE pipeline = ? ORDER BY seq DESC LIMIT ?').all(pipeline, limit) as Record<string, string>[];
    return rows.map(deploymentView);
  }

  /** The last `maxLines` lines of a run's log (read from the end), and how many lines it has. */
  logTail(runId: string, maxLines: number): { text: string; totalLines: number; shownLines: number } {
    const total = (this.#sql('SELECT COALESCE(SUM(lines), 0) AS n FROM log_chunks WHERE run_id = ?').get(runId) as { n: number }).n;
    const parts: string[] = [];
    let shown = 0;
    for (const row of this.#sql('SELECT lines, text FROM log_chunks WHERE run_id = ? ORDER BY seq DESC').iterate(runId) as Iterable<{ lines: number; text: string }>) {
      if (shown + row.lines > maxLines) {
        const keep = maxLines - shown;
        if (keep > 0) {
          const lines = row.text.split('\n');
          parts.push(`${lines.slice(lines.length - 1 - keep, lines.length - 1).join('\n')}\n`);
          shown += keep;
        }
        break;
      }
      parts.push(row.text);
      shown += row.lines;
    }
    return { text: parts.reverse().join(''), totalLines: total, shownLines: shown };
  }

  /** The newest log chunk's seq (0 when there is no log yet). */
  lastLogSeq(runId: string): number {
    return (this.#sql('SELECT COALESCE(MAX(seq), 0) AS n FROM log_chunks WHERE run_id = ?').get(runId) as { n: number }).n;
  }

  /** Log chunks after chunk `afterSeq` (their `seq` is the live stream's event id), oldest first. */
  logChunksAfter(runId: string, afterSeq: number, limit = 1000): LogChunkView[] {
    return this.#sql('SELECT seq, stage, lines, text FROM log_chunks WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(runId, afterSeq, limit) as unknown as LogChunkView[];
  }

  /**
   * Where a live view that starts at the end of the log should begin: the seq before the
   * newest chunks that hold `maxLines` lines (so it shows about the same tail as a page).
   */
  logTailStart(runId: string, maxLines: number): number {
    let lines = 0;
    let start = 0;
    for (const row of this.#sql('SELECT seq, lines FROM log_chunks WHERE run_id = ? ORDER BY seq DESC').iterate(runId) as Iterable<{ seq: number; lines: number }>) {
      if (lines >= maxLines) return row.seq;
      lines += row.lines;
      start = row.seq - 1;
    }
    return Math.max(0, start);
  }

  /** The whole log, chunk by chunk, without loading it all at once. */
  *logChunks(runId: string): Generator<string> {
    const stmt = this.#sql('SELECT text FROM log_chunks WHERE run_id = ? ORDER BY seq');
    for (const row of stmt.iterate(runId) as Iterable<{ text: string }>) yield row.text;
  }

  /**
   * Applies one worker event. Returns false (and changes nothing) when it would be an
   * illegal transition, e.g. a late event for a run that was already cancelled.
   */
  apply(e: RunEvent): boolean {
    switch (e.type) {
      case 'run.started': {
        const row = this.#sql('SELECT status, attempts FROM runs WHERE id = ?').get(e.runId) as { status: RunStatus; attempts: number } | undefined;
        if (!row) return false;
        if (row.status === 'running' && e.attempt > row.attempts) {
          // The previous attempt's worker died mid-run: this attempt starts over.
          transaction(this.#db, () => {
            this.#resetStages(e.runId);
            this.#sql('UPDATE runs SET attempts = ?, worker = ? WHERE id = ?').run(e.attempt, e.worker, e.runId);
            this.appendLog(e.runId, null, e.at, [`attempt ${e.attempt} on ${e.worker}: the previous attempt was interrupted; starting over`]);
          });
          return true;
        }
        if (row.status !== 'queued') return false;
        this.#sql('UPDATE runs SET attempts = ? WHERE id = ?').run(Math.max(e.attempt - 1, row.attempts), e.runId);
        return this.#transitionRun(e.runId, 'running', { started_at: e.at, worker: e.worker }, true);
      }
      case 'run.parked': {
        const ok = this.#transitionRun(e.runId, 'queued', { started_at: null, worker: null });
        if (ok) {
          this.#resetStages(e.runId);
          this.appendLog(e.runId, null, e.at, [`parked: ${e.reason}`]);
        }
        return ok;
      }
      case 'run.finished':
        return this.#transitionRun(e.runId, e.status, { finished_at: e.at, error: e.error ?? null, ...(e.supersededBy ? { superseded_by: e.supersededBy } : {}) });
      case 'run.commit':
        this.#sql('UPDATE runs SET commit_sha = ?, commit_subject = ?, commit_author = ? WHERE id = ? AND (commit_sha IS NULL OR commit_sha = ?)')
          .run(e.commit, e.subject, e.author, e.runId, e.commit);
        return true;
      case 'stage.started':
        return this.#transitionStage(e.runId, e.stage, 'running', { started_at: e.at, finished_at: null, error: null });
      case 'stage.finished':
        return this.#transitionStage(e.runId, e.stage, e.status, { finished_at: e.at, error: e.error ?? null });
      case 'log':
        this.appendLog(e.runId, e.stage, e.at, e.lines);
        return true;
      case 'image':
        this.#sql('UPDATE runs SET image_ref = ?, image_digest = ? WHERE id = ?').run(e.ref, e.digest, e.runId);
        return true;
      case 'service.result': {
        const r = e.result;
        this.#sql('INSERT INTO service_deploys (run_id, service, outcome, previous_image, final_image, task_errors, message, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          .run(e.runId, r.service, r.outcome, r.previousImage, r.image, JSON.stringify(r.taskErrors), r.message, e.at);
        return true;
      }
      case 'deployed': {
        const run = this.getRun(e.runId);
        if (!run) return false;
        transaction(this.#db, () => {
          this.#sql('UPDATE deployments SET replaced_at = ? WHERE pipeline = ? AND service = ? AND replaced_at IS NULL')
            .run(e.at, run.pipeline, e.service);
          this.#sql(
              'INSERT INTO deployments (id, pipeline, service, image_ref, digest, commit_sha, run_id, deployed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            )
            .run(newId('d'), run.pipeline, e.service, e.image, e.digest, e.commit, e.runId, e.at);
        });
        return true;
      }
    }
  }

  /** Queued runs of a pipeline, oldest first. */
  queuedRuns(pipeline: string): RunView[] {
    const rows = this.#sql("SELECT * FROM runs WHERE pipeline = ? AND status = 'queued' ORDER BY seq").all(pipeline) as unknown as RunRow[];
    return rows.map((r) => this.#view(r));
  }

  /**
   * Ids of this pipeline's queued runs recorded before run `beforeId`, oldest first.
   * By insertion order (seq): the order the store wrote them, whatever made the ids.
   */
  queuedRunIdsBefore(pipeline: string, beforeId: string): string[] {
    return (
      this.#sql("SELECT id FROM runs WHERE pipeline = ? AND status = 'queued' AND seq < (SELECT seq FROM runs WHERE id = ?) ORDER BY seq").all(pipeline, beforeId) as { id: string }[]
    ).map((r) => r.id);
  }

  activeRuns(pipeline: string): RunView[] {
    const rows = this.#sql("SELECT * FROM runs WHERE pipeline = ? AND status = 'running' ORDER BY seq").all(pipeline) as unknown as RunRow[];
    return rows.map((r) => this.#view(r));
  }

  /** Ends a run that never started (or whose worker is gone) from the store's side. */
  finish(id: string, status: RunStatus, error: string | null, supersededBy?: string): boolean {
    const at = new Date().toISOString();
    return transaction(this.#db, () => {
      const ok = this.#transitionRun(id, status, { finished_at: at, error, ...(supersededBy ? { superseded_by: supersededBy } : {}) });
      if (ok) {
        this.#sql("UPDATE stages SET status = CASE WHEN status = 'running' THEN 'cancelled' ELSE 'skipped' END, finished_at = COALESCE(finished_at, ?) WHERE run_id = ? AND status IN ('pending', 'running')")
          .run(at, id);
      }
      return ok;
    });
  }

  /** Statuses of every run of this pipeline for this commit. */
  statusesForCommit(pipeline: string, commit: string): RunStatus[] {
    const rows = this.#sql('SELECT status FROM runs WHERE pipeline = ? AND commit_sha = ?').all(pipeline, commit) as { status: RunStatus }[];
    return rows.map((r) => r.status);
  }

  /**
   * Removes finished runs (with stages, logs, results) beyond the newest `keep` or
   * older than `maxAgeMs`. Runs behind a deployment that still serves are kept;
   * deployment history itself is kept (it is small, and rollback needs it).
   */
  prune(pipeline: string, keep: number, maxAgeMs: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return transaction(this.#db, () => {
      const res = this.#sql(
          `DELETE FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'cancelled', 'superseded')
             AND id NOT IN (SELECT run_id FROM deployments WHERE pipeline = ? AND replaced_at IS NULL)
             AND (seq NOT IN (SELECT seq FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT ?) OR created_at < ?)`,
        )
        .run(pipeline, pipeline, pipeline, keep, cutoff);
      return Number(res.changes);
    });
  }

  /** Webhook deliveries are only needed to answer redeliveries, which come within days. */
  pruneDeliveries(maxAgeMs: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return Number(this.#sql('DELETE FROM deliveries WHERE received_at < ?').run(cutoff).changes);
  }

  pause(pipeline: string, reason: string, by: string): void {
    this.#sql('INSERT INTO pipeline_pauses (pipeline, reason, paused_by, at) VALUES (?, ?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET reason = excluded.reason, paused_by = excluded.paused_by, at = excluded.at')
      .run(pipeline, reason, by, new Date().toISOString());
  }

  resume(pipeline: string): void {
    this.#sql('DELETE FROM pipeline_pauses WHERE pipeline = ?').run(pipeline);
  }

  pauseOf(pipeline: string): { reason: string; by: string; at: string } | undefined {
    const row = this.#sql('SELECT reason, paused_by, at FROM pipeline_pauses WHERE pipeline = ?').get(pipeline) as { reason: string; paused_by: string; at: string } | undefined;
    return row ? { reason: row.reason, by: row.paused_by, at: row.at } : undefined;
  }

  getDeployment(id: string): DeploymentView | undefined {
    const row = this.#sql('SELECT * FROM deployments WHERE id = ?').get(id) as Record<string, string> | undefined;
    return row ? deploymentView(row) : undefined;
  }

  requestCancel(id: string, by: string): void {
    this.#sql('UPDATE runs SET cancel_requested = ? WHERE id = ?').run(by, id);
  }

  supersededBy(id: string): string | null {
    return (this.#sql('SELECT superseded_by FROM runs WHERE id = ?').get(id) as { superseded_by: string | null } | undefined)?.superseded_by ?? null;
  }

  #resetStages(runId: string): void {
    this.#sql("UPDATE stages SET status = 'pending', started_at = NULL, finished_at = NULL, error = NULL WHERE run_id = ?").run(runId);
  }

  appendLog(runId: string, stage: string | null, at: string, lines: string[]): void {
    if (lines.length === 0) return;
    const next = this.#sql('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM log_chunks WHERE run_id = ?').get(runId) as { n: number };
    this.#sql('INSERT INTO log_chunks (run_id, seq, stage, at, lines, text) VALUES (?, ?, ?, ?, ?, ?)')
      .run(runId, next.n, stage, at, lines.length, `${lines.join('\n')}\n`);
  }

  #transitionRun(id: string, to: RunStatus, fields: Record<string, SQLInputValue>, countAttempt = false): boolean {
    const row = this.#sql('SELECT status FROM runs WHERE id = ?').get(id) as { status: RunStatus } | undefined;
    if (!row || !canTransitionRun(row.status, to)) return false;
    const sets = Object.keys(fields).map((k) => `${k} = ?`);
    if (countAttempt) sets.push('attempts = attempts + 1');
    this.#sql(`UPDATE runs SET status = ?, ${sets.join(', ')} WHERE id = ?`).run(to, ...Object.values(fields), id);
    return true;
  }

  #transitionStage(runId: string, stage: StageName, to: StageStatus, fields: Record<string, SQLInputValue>): boolean {
    const row = this.#sql('SELECT status FROM stages WHERE run_id = ? AND name = ?').get(runId, stage) as { status: StageStatus } | undefined;
    if (!row || !canTransitionStage(row.status, to)) return false;
    const sets = Object.keys(fields).map((k) => `${k} = ?`);
    this.#sql(`UPDATE stages SET status = ?, ${sets.join(', ')} WHERE run_id = ? AND name = ?`).run(to, ...Object.values(fields), runId, stage);
    return true;
  }

  #view(row: RunRow): RunView {
    const stages = this.#sql('SELECT name, status, started_at, finished_at, error FROM stages WHERE run_id = ? ORDER BY position')
      .all(row.id) as { name: StageName; status: StageStatus; started_at: string | null; finished_at: string | null; error: string | null }[];
    return {
      id: row.id,
      pipeline: row.pipeline,
      commit: row.commit_sha,
      subject: row.commit_subject,
      author: row.commit_author,
      status: row.status,
      trigger: row.trigger,
      stages: stages.map((s) => ({ name: s.name, status: s.status, startedAt: s.started_at, finishedAt: s.finished_at, error: s.error })),
      image: row.image_ref && row.image_digest ? { ref: row.image_ref, digest: row.image_digest } : null,
      createdAt: row.created_at,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      error: row.error,
      deliveryId: row.delivery_id,
      requestedBy: row.requested_by,
      attempts: row.attempts,
      supersededBy: row.superseded_by,
      worker: row.worker,
      targetImage: row.target_image,
      deploys: (
        this.#sql('SELECT * FROM service_deploys WHERE run_id = ? ORDER BY seq').all(row.id) as Record<string, string>[]
      ).map((d) => ({
        service: d.service!,
        outcome: d.outcome!,
        previousImage: d.previous_image ?? null,
        image: d.final_image ?? null,
        taskErrors: JSON.parse(d.task_errors ?? '[]') as string[],
        message: d.message!,
        at: d.at!,
      })),
    };
  }
}

function deploymentView(row: Record<string, string>): DeploymentView {
  return {
    id: row.id!,
    pipeline: row.pipeline!,
    service: row.service!,
    image: row.image_ref!,
    digest: row.digest!,
    commit: row.commit_sha!,
    runId: row.run_id!,
    deployedAt: row.deployed_at!,
    replacedAt: row.replaced_at ?? null,
  };
}
