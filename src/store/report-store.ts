import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { transaction } from './db.ts';
import { statementCache } from './sql.ts';

/** One run's GitHub report: GitHub's ids and what was last queued for it. */
export interface GitHubReportRow {
  runId: string;
  pipeline: string;
  repo: string;
  commit: string;
  environment: string;
  deploymentId: number | null;
  checkRunId: number | null;
  deploymentState: string | null;
  checkKey: string | null;
  createdAt: string;
}

export type StepKind = 'deployment' | 'deployment_status' | 'check_run' | 'commit_status';
export type StepStatus = 'pending' | 'sent' | 'skipped' | 'refused' | 'failed';

export interface GitHubStepRow {
  seq: number;
  runId: string;
  pipeline: string;
  kind: StepKind;
  state: string;
  body: Record<string, unknown>;
  status: StepStatus;
  attempts: number;
  lastCode: number | null;
  lastError: string | null;
  createdAt: string;
  doneAt: string | null;
}

export interface NewStep {
  kind: StepKind;
  state: string;
  body: Record<string, unknown>;
}

export interface AttemptView {
  at: string;
  /** HTTP status; null when there was no response (refused connection, timeout). */
  status: number | null;
  error: string | null;
  ms: number;
}

export interface WarningView {
  source: string;
  message: string;
  at: string;
}

/**
 * The GitHub report outbox (migration 015), delivery attempts and pipeline warnings
 * (016). Written only by the store owner's report observer and report queue jobs.
 */
export class ReportStore {
  readonly #db: DatabaseSync;
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#sql = statementCache(db);
  }


  report(runId: string): GitHubReportRow | undefined {
    const row = this.#sql('SELECT * FROM github_reports WHERE run_id = ?').get(runId) as Record<string, SQLInputValue> | undefined;
    return row ? reportView(row) : undefined;
  }

  /**
   * Queues steps for a run and records what they bring GitHub to, in one transaction
   * (creating the run's report row first if needed). Steps for another run (the
   * `inactive` of the deployment this one replaced) go in `others`.
   */
  queue(
    report: Omit<GitHubReportRow, 'deploymentId' | 'checkRunId' | 'deploymentState' | 'checkKey' | 'createdAt'>,
    steps: NewStep[],
    state: { deploymentState?: string; checkKey?: string },
    others: { runId: string; pipeline: string; step: NewStep; deploymentState: string }[] = [],
  ): void {
    const now = new Date().toISOString();
    transaction(this.#db, () => {
      this.#sql('INSERT OR IGNORE INTO github_reports (run_id, pipeline, repo, commit_sha, environment, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(report.runId, report.pipeline, report.repo, report.commit, report.environment, now);
      for (const s of steps) this.#insertStep(report.runId, report.pipeline, s, now);
      if (state.deploymentState !== undefined) this.#sql('UPDATE github_reports SET deployment_state = ? WHERE run_id = ?').run(state.deploymentState, report.runId);
      if (state.checkKey !== undefined) this.#sql('UPDATE github_reports SET check_key = ? WHERE run_id = ?').run(state.checkKey, report.runId);
      for (const o of others) {
        this.#insertStep(o.runId, o.pipeline, o.step, now);
        this.#sql('UPDATE github_reports SET deployment_state = ? WHERE run_id = ?').run(o.deploymentState, o.runId);
      }
    });
  }

  #insertStep(runId: string, pipeline: string, s: NewStep, now: string): void {
    this.#sql('INSERT INTO github_steps (run_id, pipeline, kind, state, body, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(runId, pipeline, s.kind, s.state, JSON.stringify(s.body), now);
  }

  /**
   * The deployment that serves in this pipeline's environment before `runId` (its last
   * state queued was success, and it is not this run): it becomes `inactive`.
   */
  previousLive(pipeline: string, environment: string, runId: string): GitHubReportRow | undefined {
    const row = this.#sql(
      "SELECT * FROM github_reports WHERE pipeline = ? AND environment = ? AND deployment_state = 'success' AND run_id != ? ORDER BY created_at DESC LIMIT 1",
    ).get(pipeline, environment, runId) as Record<string, SQLInputValue> | undefined;
    return row ? reportView(row) : undefined;
  }

  setDeploymentId(runId: string, id: number): void {
    this.#sql('UPDATE github_reports SET deployment_id = ? WHERE run_id = ?').run(id, runId);
  }

  setCheckRunId(runId: string, id: number): void {
    this.#sql('UPDATE github_reports SET check_run_id = ? WHERE run_id = ?').run(id, runId);
  }

  pendingSteps(runId: string): GitHubStepRow[] {
    return (this.#sql("SELECT * FROM github_steps WHERE run_id = ? AND status = 'pending' ORDER BY seq").all(runId) as Record<string, SQLInputValue>[]).map(stepView);
  }

  /** Runs with steps still to post (for the sweep that re-queues jobs lost with Redis). */
  runsWithPendingSteps(limit = 500): string[] {
    return (this.#sql("SELECT DISTINCT run_id FROM github_steps WHERE status = 'pending' LIMIT ?").all(limit) as { run_id: string }[]).map((r) => r.run_id);
  }

  /** Runs GitHub heard of whose deployment has no final state yet: the observer re-checks them. */
  openReports(limit = 500): string[] {
    return (
      this.#sql("SELECT run_id FROM github_reports WHERE deployment_state IS NULL OR deployment_state IN ('queued', 'in_progress') LIMIT ?").all(limit) as { run_id: string }[]
    ).map((r) => r.run_id);
  }

  /** Records one HTTP request made for a step (each retry is one). */
  recordStepAttempt(seq: number, attempt: AttemptView): void {
    transaction(this.#db, () => {
      this.#sql('INSERT INTO delivery_attempts (channel, ref, at, status_code, error, ms) VALUES (?, ?, ?, ?, ?, ?)')
        .run('github', String(seq), attempt.at, attempt.status, attempt.error, attempt.ms);
      this.#sql('UPDATE github_steps SET attempts = attempts + 1, last_code = COALESCE(?, last_code), last_error = ? WHERE seq = ?').run(attempt.status, attempt.error, seq);
    });
  }

  /** A step's new status; `error` says why when it is not sent (kept otherwise). */
  markStep(seq: number, status: StepStatus, error?: string): void {
    this.#sql(
      "UPDATE github_steps SET status = ?, last_error = CASE WHEN ? = 'sent' THEN NULL ELSE COALESCE(?, last_error) END, done_at = CASE WHEN ? = 'pending' THEN NULL ELSE ? END WHERE seq = ?",
    ).run(status, status, error ?? null, status, new Date().toISOString(), seq);
  }

  /** The newest steps of a pipeline, with their attempts, newest first. */
  recentSteps(pipeline: string, limit = 30): (GitHubStepRow & { attemptLog: AttemptView[] })[] {
    const rows = (this.#sql('SELECT * FROM github_steps WHERE pipeline = ? ORDER BY seq DESC LIMIT ?').all(pipeline, limit) as Record<string, SQLInputValue>[]).map(stepView);
    return rows.map((r) => ({ ...r, attemptLog: this.attempts('github', String(r.seq)) }));
  }

  stepsOfRun(runId: string): GitHubStepRow[] {
    return (this.#sql('SELECT * FROM github_steps WHERE run_id = ? ORDER BY seq').all(runId) as Record<string, SQLInputValue>[]).map(stepView);
  }

  attempts(channel: 'github' | 'notify', ref: string, limit = 20): AttemptView[] {
    return (
      this.#sql('SELECT at, status_code, error, ms FROM delivery_attempts WHERE channel = ? AND ref = ? ORDER BY seq DESC LIMIT ?').all(channel, ref, limit) as {
        at: string;
        status_code: number | null;
        error: string | null;
        ms: number;
      }[]
    )
      .reverse()
      .map((a) => ({ at: a.at, status: a.status_code, error: a.error, ms: a.ms }));
  }

  recordAttempt(channel: 'github' | 'notify', ref: string, attempt: AttemptView): void {
    this.#sql('INSERT INTO delivery_attempts (channel, ref, at, status_code, error, ms) VALUES (?, ?, ?, ?, ?, ?)')
      .run(channel, ref, attempt.at, attempt.status, attempt.error, attempt.ms);
  }

  setWarning(pipeline: string, source: string, message: string): void {
    this.#sql('INSERT INTO pipeline_warnings (pipeline, source, message, at) VALUES (?, ?, ?, ?) ON CONFLICT (pipeline, source) DO UPDATE SET message = excluded.message, at = excluded.at')
      .run(pipeline, source, message, new Date().toISOString());
  }

  clearWarning(pipeline: string, source: string): void {
    this.#sql('DELETE FROM pipeline_warnings WHERE pipeline = ? AND source = ?').run(pipeline, source);
  }

  warnings(pipeline: string): WarningView[] {
    return this.#sql('SELECT source, message, at FROM pipeline_warnings WHERE pipeline = ? ORDER BY at').all(pipeline) as unknown as WarningView[];
  }

  /** Attempts whose step or notification is gone (runs removed by retention). */
  pruneAttempts(): number {
    const a = this.#sql("DELETE FROM delivery_attempts WHERE channel = 'github' AND CAST(ref AS INTEGER) NOT IN (SELECT seq FROM github_steps)").run();
    const b = this.#sql("DELETE FROM delivery_attempts WHERE channel = 'notify' AND ref NOT IN (SELECT id FROM notifications)").run();
    return Number(a.changes) + Number(b.changes);
  }
}

function reportView(row: Record<string, SQLInputValue>): GitHubReportRow {
  return {
    runId: row.run_id as string,
    pipeline: row.pipeline as string,
    repo: row.repo as string,
    commit: row.commit_sha as string,
    environment: row.environment as string,
    deploymentId: (row.deployment_id as number | null) ?? null,
    checkRunId: (row.check_run_id as number | null) ?? null,
    deploymentState: (row.deployment_state as string | null) ?? null,
    checkKey: (row.check_key as string | null) ?? null,
    createdAt: row.created_at as string,
  };
}

function stepView(row: Record<string, SQLInputValue>): GitHubStepRow {
  return {
    seq: row.seq as number,
    runId: row.run_id as string,
    pipeline: row.pipeline as string,
    kind: row.kind as StepKind,
    state: row.state as string,
    body: JSON.parse(row.body as string) as Record<string, unknown>,
    status: row.status as StepStatus,
    attempts: row.attempts as number,
    lastCode: (row.last_code as number | null) ?? null,
    lastError: (row.last_error as string | null) ?? null,
    createdAt: row.created_at as string,
    doneAt: (row.done_at as string | null) ?? null,
  };
}
