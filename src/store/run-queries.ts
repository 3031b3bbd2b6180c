import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { RunStatus, StageName, StageStatus, Trigger } from '../pipeline/states.ts';
import type { RunStore, RunView, StageView } from './run-store.ts';
import { statementCache } from './sql.ts';

/** What lists of runs show: a run without its services' results, read in two queries per page. */
export type RunSummary = Pick<RunView, 'id' | 'pipeline' | 'commit' | 'subject' | 'author' | 'status' | 'trigger' | 'stages' | 'createdAt' | 'startedAt' | 'finishedAt' | 'error' | 'requestedBy' | 'supersededBy'>;

interface SummaryRow {
  id: string;
  seq: number;
  pipeline: string;
  commit_sha: string | null;
  commit_subject: string | null;
  commit_author: string | null;
  status: RunStatus;
  trigger: Trigger;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  requested_by: string | null;
  superseded_by: string | null;
}

const SUMMARY_COLUMNS = 'id, seq, pipeline, commit_sha, commit_subject, commit_author, status, trigger, created_at, started_at, finished_at, error, requested_by, superseded_by';

export interface RunFilter {
  pipeline?: string | undefined;
  status?: RunStatus | undefined;
  trigger?: Trigger | undefined;
}

/**
 * Read-only run lists for the console (across pipelines, filtered by status or
 * trigger). Rows are found here by id and read through RunStore.getRun, so a run has
 * one shape everywhere.
 */
export class RunQueries {
  readonly #db: DatabaseSync;
  readonly #runs: RunStore;
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync, runs: RunStore) {
    this.#db = db;
    this.#sql = statementCache(db);
    this.#runs = runs;
  }


  /**
   * Like list(), as summaries: a page of runs in two queries (runs, then their stages),
   * where reading each run whole costs three per run. For pages that list many runs.
   */
  summaries(filter: RunFilter, limit: number, before?: number): { runs: RunSummary[]; next: number | null } {
    const { where, args } = whereOf(filter, before);
    const rows = this.#sql(`SELECT ${SUMMARY_COLUMNS} FROM runs ${where} ORDER BY seq DESC LIMIT ?`).all(...args, limit + 1) as unknown as SummaryRow[];
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    return { runs: this.#withStages(page), next: more ? page[page.length - 1]!.seq : null };
  }

  /** Per pipeline, the run active now: running, else the oldest waiting one (one query for all). */
  currentByPipeline(): Map<string, RunSummary> {
    const rows = this.#sql(`SELECT ${SUMMARY_COLUMNS} FROM runs WHERE status IN ('running', 'queued') ORDER BY seq`).all() as unknown as SummaryRow[];
    const pick = new Map<string, SummaryRow>();
    for (const r of rows) {
      const had = pick.get(r.pipeline);
      if (!had || (had.status !== 'running' && r.status === 'running')) pick.set(r.pipeline, r);
      else if (had.status === 'running' && r.status === 'running') pick.set(r.pipeline, r); // the newest running one
    }
    const runs = this.#withStages([...pick.values()]);
    return new Map(runs.map((r) => [r.pipeline, r]));
  }

  /** Summaries of these runs (any order; missing ids are left out). */
  summariesOf(ids: readonly string[]): Map<string, RunSummary> {
    if (ids.length === 0) return new Map();
    const rows = this.#db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM runs WHERE id IN (${ids.map(() => '?').join(',')})`).all(...ids) as unknown as SummaryRow[];
    return new Map(this.#withStages(rows).map((r) => [r.id, r]));
  }

  #withStages(rows: SummaryRow[]): RunSummary[] {
    const stages = new Map<string, StageView[]>();
    if (rows.length) {
      const all = this.#db
        .prepare(`SELECT run_id, name, status, started_at, finished_at, error FROM stages WHERE run_id IN (${rows.map(() => '?').join(',')}) ORDER BY run_id, position`)
        .all(...rows.map((r) => r.id)) as { run_id: string; name: StageName; status: StageStatus; started_at: string | null; finished_at: string | null; error: string | null }[];
      for (const s of all) {
        let list = stages.get(s.run_id);
        if (!list) stages.set(s.run_id, (list = []));
        list.push({ name: s.name, status: s.status, startedAt: s.started_at, finishedAt: s.finished_at, error: s.error });
      }
    }
    return rows.map((r) => ({
      id: r.id,
      pipeline: r.pipeline,
      commit: r.commit_sha,
      subject: r.commit_subject,
      author: r.commit_author,
      status: r.status,
      trigger: r.trigger,
      stages: stages.get(r.id) ?? [],
      createdAt: r.created_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      error: r.error,
      requestedBy: r.requested_by,
      supersededBy: r.superseded_by,
    }));
  }

  /** Newest first; `before` is the cursor returned as `next` (the same one GET /api/pipelines/:name/runs uses). */
  list(filter: RunFilter, limit: number, before?: number): { runs: RunView[]; next: number | null } {
    const { where, args } = whereOf(filter, before);
    const rows = this.#sql(`SELECT id, seq FROM runs ${where} ORDER BY seq DESC LIMIT ?`)
      .all(...args, limit + 1) as { id: string; seq: number }[];
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    const runs = page.map((r) => this.#runs.getRun(r.id)).filter((r): r is RunView => r !== undefined);
    return { runs, next: more ? page[page.length - 1]!.seq : null };
  }

  /** Whether the last `n` finished runs of a pipeline all failed (a "failing" badge). */
  failingStreak(pipeline: string): number {
    const rows = this.#sql("SELECT status FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed') ORDER BY seq DESC LIMIT 10").all(pipeline) as { status: RunStatus }[];
    let n = 0;
    for (const r of rows) {
      if (r.status !== 'failed') break;
      n++;
    }
    return n;
  }

  /** How many lines a run's log has. */
  logLineCount(runId: string): number {
    return (this.#sql('SELECT COALESCE(SUM(lines), 0) AS n FROM log_chunks WHERE run_id = ?').get(runId) as { n: number }).n;
  }

  /**
   * A cheap fingerprint of what the overview shows: it changes when a run is created,
   * starts, ends or changes stage, when a deployment is recorded, or a pause changes.
   */
  fingerprint(): string {
    const row = this.#sql(
      `SELECT (SELECT COALESCE(MAX(seq), 0) FROM runs) AS runs,
              (SELECT group_concat(id || status, ',') FROM runs WHERE status IN ('queued', 'running')) AS active,
              (SELECT COALESCE(MAX(seq), 0) FROM deployments) AS deployments,
              (SELECT group_concat(pipeline || at, ',') FROM pipeline_pauses) AS pauses`,
    ).get() as Record<string, string | number | null>;
    return `${row.runs}|${row.active ?? ''}|${row.deployments}|${row.pauses ?? ''}`;
  }
}

function whereOf(filter: RunFilter, before: number | undefined): { where: string; args: SQLInputValue[] } {
  const where: string[] = [];
  const args: SQLInputValue[] = [];
  for (const [column, value] of [['pipeline', filter.pipeline], ['status', filter.status], ['trigger', filter.trigger]] as const) {
    if (value !== undefined) {
      where.push(`${column} = ?`);
      args.push(value);
    }
  }
  if (before !== undefined) {
    where.push('seq < ?');
    args.push(before);
  }
  return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', args };
}
