import { newRunState, type RunState, type StageState } from '../pipeline/lifecycle.ts';
import type { ProbeResult, VerifyResult } from '../pipeline/ports.ts';
import { RUN_STATUSES, STAGE_NAMES, STAGE_STATUSES, type RunStatus, type StageName, type StageStatus, type Trigger } from '../pipeline/states.ts';
import { newId } from './ids.ts';
import { int, oneOf, text, textOrNull, type Row, type Sql } from './sql.ts';

export interface StageView {
  name: StageName;
  status: StageStatus;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
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
  /** Events about this run that could not be applied and were set aside (see the daemon's log). */
  setAsideEvents: number;
  /** deploy.verify: whether the edge served the new commit, and what it served (null: not configured or not reached). */
  verify: VerifyResult | null;
  /** deploy.probe: requests sent / failed, p50/p99 latency and the longest gap during the rollout. */
  probe: ProbeResult | null;
  /** After a rollback: whether the edge served the previous commit again. */
  verifyPrevious: VerifyResult | null;
  /** onFailure: previous-good-push: the failed run this one was started after. */
  follows: string | null;
  /** onFailure: previous-good-push: the run started after this one failed. */
  followedBy: string | null;
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
  /** onFailure: previous-good-push: the failed run this one follows. */
  follows?: string;
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
  trigger: Trigger;
  targetImage?: string | null;
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
  /** The batch's runs recorded as superseded already (latest push wins), with the run that replaced each. */
  superseded: { id: string; supersededBy: string; at: string }[];
}

const TRIGGERS = ['push', 'rebuild', 'rollback', 'poll'] as const satisfies readonly Trigger[];

/** The columns of `runs`, read and checked once. */
interface RunRow {
  seq: number;
  id: string;
  pipeline: string;
  trigger: Trigger;
  status: RunStatus;
  commit: string | null;
  subject: string | null;
  author: string | null;
  deliveryId: string | null;
  requestedBy: string | null;
  imageRef: string | null;
  imageDigest: string | null;
  error: string | null;
  attempts: number;
  worker: string | null;
  targetImage: string | null;
  supersededBy: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  exec: string | null;
  eventSeq: number;
  finishedBy: 'worker' | 'store' | null;
  handoffAt: string | null;
  verify: VerifyResult | null;
  probe: ProbeResult | null;
  verifyPrevious: VerifyResult | null;
  follows: string | null;
}

function jsonOrNull<T>(r: Row, column: string): T | null {
  const v = textOrNull(r, column);
  if (v === null) return null;
  try {
    return JSON.parse(v) as T;
  } catch {
    return null;
  }
}

function runRow(r: Row): RunRow {
  const finishedBy = textOrNull(r, 'finished_by');
  return {
    seq: int(r, 'seq'),
    id: text(r, 'id'),
    pipeline: text(r, 'pipeline'),
    trigger: oneOf(r, 'trigger', TRIGGERS),
    status: oneOf(r, 'status', RUN_STATUSES),
    commit: textOrNull(r, 'commit_sha'),
    subject: textOrNull(r, 'commit_subject'),
    author: textOrNull(r, 'commit_author'),
    deliveryId: textOrNull(r, 'delivery_id'),
    requestedBy: textOrNull(r, 'requested_by'),
    imageRef: textOrNull(r, 'image_ref'),
    imageDigest: textOrNull(r, 'image_digest'),
    error: textOrNull(r, 'error'),
    attempts: int(r, 'attempts'),
    worker: textOrNull(r, 'worker'),
    targetImage: textOrNull(r, 'target_image'),
    supersededBy: textOrNull(r, 'superseded_by'),
    createdAt: text(r, 'created_at'),
    startedAt: textOrNull(r, 'started_at'),
    finishedAt: textOrNull(r, 'finished_at'),
    exec: textOrNull(r, 'exec'),
    eventSeq: int(r, 'event_seq'),
    finishedBy: finishedBy === 'worker' || finishedBy === 'store' ? finishedBy : null,
    handoffAt: textOrNull(r, 'handoff_at'),
    verify: jsonOrNull<VerifyResult>(r, 'verify_json'),
    probe: jsonOrNull<ProbeResult>(r, 'probe_json'),
    verifyPrevious: jsonOrNull<VerifyResult>(r, 'verify_previous_json'),
    follows: textOrNull(r, 'follows_run'),
  };
}

function stageRow(r: Row): StageView {
  return {
    name: oneOf(r, 'name', STAGE_NAMES),
    status: oneOf(r, 'status', STAGE_STATUSES),
    startedAt: textOrNull(r, 'started_at'),
    finishedAt: textOrNull(r, 'finished_at'),
    error: textOrNull(r, 'error'),
  };
}

function serviceDeployRow(r: Row): ServiceDeployView {
  const errors: unknown = JSON.parse(text(r, 'task_errors'));
  return {
    service: text(r, 'service'),
    outcome: text(r, 'outcome'),
    previousImage: textOrNull(r, 'previous_image'),
    image: textOrNull(r, 'final_image'),
    taskErrors: Array.isArray(errors) ? errors.map(String) : [],
    message: text(r, 'message'),
    at: text(r, 'at'),
  };
}

/** A run's state as the lifecycle sees it, with the pipeline it belongs to. */
export interface StoredRun {
  id: string;
  pipeline: string;
  state: RunState;
}

/**
 * Runs, their stages and the webhook deliveries that created them. Run state is only
 * written through `saveState`, with a state the lifecycle (src/pipeline/lifecycle.ts)
 * produced; creating, reading and forgetting runs is done here.
 */
export class RunRepository {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Creates runs (and the delivery that caused them) atomically. */
  createRuns(runs: NewRun[], delivery?: { id: string; event: string }): RunView[] {
    const now = new Date().toISOString();
    const ids = this.#sql.transaction(() => {
      const created = runs.map((r) => {
        const id = newId('r');
        this.#insertRun(id, r, now);
        return id;
      });
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
    return this.#sql.transaction(() => {
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
      for (const { id, run } of fresh) newest.set(run.pipeline, { id, pipeline: run.pipeline, commit: run.commit, trigger: run.trigger });
      const superseded: RecordedPushes['superseded'] = [];
      for (const { id, run } of fresh) {
        const winner = newest.get(run.pipeline)!.id;
        this.#insertRun(id, run, now, winner === id ? undefined : winner);
        if (winner !== id) superseded.push({ id, supersededBy: winner, at: now });
      }
      return { answers, newest: [...newest.values()], runIds: fresh.map((f) => f.id), deliveryIds, superseded };
    });
  }

  /** A new run in the lifecycle's initial state: queued, or already superseded by `supersededBy`. */
  #insertRun(id: string, r: NewRun, now: string, supersededBy?: string): void {
    const s = newRunState({ commit: r.commit, subject: r.subject ?? null, author: r.author ?? null, at: now, ...(supersededBy ? { supersededBy } : {}) });
    this.#sql.run(
      `INSERT INTO runs (id, pipeline, trigger, status, commit_sha, commit_subject, commit_author, delivery_id, requested_by, target_image, created_at, finished_at, error, superseded_by, finished_by, follows_run)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      id, r.pipeline, r.trigger, s.status, s.commit, s.subject, s.author, r.deliveryId ?? null, r.requestedBy ?? null,
      r.targetImage ?? null, now, s.finishedAt, s.error, s.supersededBy, s.finishedBy, r.follows ?? null,
    );
    STAGE_NAMES.forEach((name, i) => {
      const stage = s.stages[name];
      this.#sql.run('INSERT INTO stages (run_id, position, name, status, finished_at) VALUES (?, ?, ?, ?, ?)', id, i, name, stage.status, stage.finishedAt);
    });
  }

  #recordDelivery(id: string, event: string, outcome: DeliveryOutcome, at: string): void {
    this.#sql.run('INSERT OR IGNORE INTO deliveries (id, event, received_at, outcome) VALUES (?, ?, ?, ?)', id, event, at, JSON.stringify(outcome));
  }

  findDelivery(id: string): DeliveryOutcome | undefined {
    const row = this.#sql.get('SELECT outcome FROM deliveries WHERE id = ?', id);
    return row ? (JSON.parse(text(row, 'outcome')) as DeliveryOutcome) : undefined;
  }

  /** Undoes createRuns/recordPushes when the runs could not be queued, so a redelivery starts afresh. */
  forgetRuns(ids: readonly string[], deliveryIds: readonly string[] = []): void {
    this.#sql.transaction(() => {
      for (const id of ids) this.#sql.run('DELETE FROM runs WHERE id = ?', id);
      for (const id of deliveryIds) this.#sql.run('DELETE FROM deliveries WHERE id = ?', id);
    });
  }

  /** The run's lifecycle state, or undefined if there is no such run. */
  loadState(id: string): StoredRun | undefined {
    const r = this.#sql.get('SELECT * FROM runs WHERE id = ?', id);
    if (!r) return undefined;
    const row = runRow(r);
    const stages = Object.fromEntries(this.#stages(id).map((s) => [s.name, { status: s.status, startedAt: s.startedAt, finishedAt: s.finishedAt, error: s.error }])) as Record<StageName, StageState>;
    for (const name of STAGE_NAMES) stages[name] ??= { status: 'pending', startedAt: null, finishedAt: null, error: null };
    return {
      id: row.id,
      pipeline: row.pipeline,
      state: {
        status: row.status,
        attempts: row.attempts,
        worker: row.worker,
        exec: row.exec,
        seq: row.eventSeq,
        handoffAt: row.handoffAt,
        finishedBy: row.finishedBy,
        startedAt: row.startedAt,
        finishedAt: row.finishedAt,
        error: row.error,
        supersededBy: row.supersededBy,
        commit: row.commit,
        subject: row.subject,
        author: row.author,
        image: row.imageRef && row.imageDigest ? { ref: row.imageRef, digest: row.imageDigest } : null,
        stages,
      },
    };
  }

  /** Writes a state the lifecycle produced from `before` (only the stages that changed). */
  saveState(id: string, before: RunState, after: RunState): void {
    this.#sql.run(
      `UPDATE runs SET status = ?, attempts = ?, worker = ?, exec = ?, event_seq = ?, handoff_at = ?, finished_by = ?, started_at = ?, finished_at = ?,
         error = ?, superseded_by = ?, commit_sha = ?, commit_subject = ?, commit_author = ?, image_ref = ?, image_digest = ? WHERE id = ?`,
      after.status, after.attempts, after.worker, after.exec, after.seq, after.handoffAt, after.finishedBy, after.startedAt, after.finishedAt,
      after.error, after.supersededBy, after.commit, after.subject, after.author, after.image?.ref ?? null, after.image?.digest ?? null, id,
    );
    for (const name of STAGE_NAMES) {
      const a = after.stages[name];
      const b = before.stages[name];
      if (a.status === b.status && a.startedAt === b.startedAt && a.finishedAt === b.finishedAt && a.error === b.error) continue;
      this.#sql.run('UPDATE stages SET status = ?, started_at = ?, finished_at = ?, error = ? WHERE run_id = ? AND name = ?', a.status, a.startedAt, a.finishedAt, a.error, id, name);
    }
  }

  /** What the worker measured of users' view (an applied deploy.checks event); each given field replaces the run's. */
  recordChecks(id: string, c: { verify?: VerifyResult; probe?: ProbeResult; verifyPrevious?: VerifyResult }): void {
    if (c.verify) this.#sql.run('UPDATE runs SET verify_json = ? WHERE id = ?', JSON.stringify(c.verify), id);
    if (c.probe) this.#sql.run('UPDATE runs SET probe_json = ? WHERE id = ?', JSON.stringify(c.probe), id);
    if (c.verifyPrevious) this.#sql.run('UPDATE runs SET verify_previous_json = ? WHERE id = ?', JSON.stringify(c.verifyPrevious), id);
  }

  getRun(id: string): RunView | undefined {
    const row = this.#sql.get('SELECT * FROM runs WHERE id = ?', id);
    return row ? this.#view(runRow(row)) : undefined;
  }

  /** Newest first; `before` is the opaque cursor returned as `next`. */
  listRuns(pipeline: string, limit: number, before?: number): { runs: RunView[]; next: number | null } {
    const rows = (
      before === undefined
        ? this.#sql.all('SELECT * FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT ?', pipeline, limit + 1)
        : this.#sql.all('SELECT * FROM runs WHERE pipeline = ? AND seq < ? ORDER BY seq DESC LIMIT ?', pipeline, before, limit + 1)
    ).map(runRow);
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    return { runs: page.map((r) => this.#view(r)), next: more ? page[page.length - 1]!.seq : null };
  }

  lastRun(pipeline: string): RunView | undefined {
    const row = this.#sql.get('SELECT * FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT 1', pipeline);
    return row ? this.#view(runRow(row)) : undefined;
  }

  runsWithStatus(statuses: RunStatus[]): RunView[] {
    return this.#sql.all(`SELECT * FROM runs WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY seq`, ...statuses).map((r) => this.#view(runRow(r)));
  }

  /** Queued runs of a pipeline, oldest first. */
  queuedRuns(pipeline: string): RunView[] {
    return this.#sql.all("SELECT * FROM runs WHERE pipeline = ? AND status = 'queued' ORDER BY seq", pipeline).map((r) => this.#view(runRow(r)));
  }

  /**
   * Ids of this pipeline's queued runs recorded before run `beforeId`, oldest first.
   * By insertion order (seq): the order the store wrote them, whatever made the ids.
   */
  queuedRunIdsBefore(pipeline: string, beforeId: string): string[] {
    return this.#sql
      .all("SELECT id FROM runs WHERE pipeline = ? AND status = 'queued' AND seq < (SELECT seq FROM runs WHERE id = ?) ORDER BY seq", pipeline, beforeId)
      .map((r) => text(r, 'id'));
  }

  activeRuns(pipeline: string): RunView[] {
    return this.#sql.all("SELECT * FROM runs WHERE pipeline = ? AND status = 'running' ORDER BY seq", pipeline).map((r) => this.#view(runRow(r)));
  }

  /** Statuses of every run of this pipeline for this commit. */
  statusesForCommit(pipeline: string, commit: string): RunStatus[] {
    return this.#sql.all('SELECT status FROM runs WHERE pipeline = ? AND commit_sha = ?', pipeline, commit).map((r) => oneOf(r, 'status', RUN_STATUSES));
  }

  /** The run's status as stored now (undefined: no such run): the truth after an await. */
  statusOf(id: string): RunStatus | undefined {
    const row = this.#sql.get('SELECT status FROM runs WHERE id = ?', id);
    return row ? oneOf(row, 'status', RUN_STATUSES) : undefined;
  }

  /** Who asked for a cancel (not a state change: the worker's stop is what ends the run). */
  requestCancel(id: string, by: string): void {
    this.#sql.run('UPDATE runs SET cancel_requested = ? WHERE id = ?', by, id);
  }

  supersededBy(id: string): string | null {
    const row = this.#sql.get('SELECT superseded_by FROM runs WHERE id = ?', id);
    return row ? textOrNull(row, 'superseded_by') : null;
  }

  #stages(runId: string): StageView[] {
    return this.#sql.all('SELECT name, status, started_at, finished_at, error FROM stages WHERE run_id = ? ORDER BY position', runId).map(stageRow);
  }

  #followedBy(id: string): string | null {
    const r = this.#sql.get('SELECT id FROM runs WHERE follows_run = ? ORDER BY seq LIMIT 1', id);
    return r ? text(r, 'id') : null;
  }

  #view(row: RunRow): RunView {
    return {
      id: row.id,
      pipeline: row.pipeline,
      commit: row.commit,
      subject: row.subject,
      author: row.author,
      status: row.status,
      trigger: row.trigger,
      stages: this.#stages(row.id),
      image: row.imageRef && row.imageDigest ? { ref: row.imageRef, digest: row.imageDigest } : null,
      createdAt: row.createdAt,
      startedAt: row.startedAt,
      finishedAt: row.finishedAt,
      error: row.error,
      deliveryId: row.deliveryId,
      requestedBy: row.requestedBy,
      attempts: row.attempts,
      supersededBy: row.supersededBy,
      worker: row.worker,
      targetImage: row.targetImage,
      deploys: this.#sql.all('SELECT * FROM service_deploys WHERE run_id = ? ORDER BY seq', row.id).map(serviceDeployRow),
      setAsideEvents: int(this.#sql.get('SELECT COUNT(*) AS n FROM set_aside_events WHERE run_id = ?', row.id) ?? { n: 0 }, 'n'),
      verify: row.verify,
      probe: row.probe,
      verifyPrevious: row.verifyPrevious,
      follows: row.follows,
      followedBy: this.#followedBy(row.id),
    };
  }
}
