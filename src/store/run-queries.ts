import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { RunStatus, Trigger } from '../pipeline/states.ts';
import type { RunStore, RunView } from './run-store.ts';

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
  readonly #statements = new Map<string, StatementSync>();

  constructor(db: DatabaseSync, runs: RunStore) {
    this.#db = db;
    this.#runs = runs;
  }

  #sql(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) this.#statements.set(sql, (stmt = this.#db.prepare(sql)));
    return stmt;
  }

  /** Newest first; `before` is the cursor returned as `next` (the same one GET /api/pipelines/:name/runs uses). */
  list(filter: RunFilter, limit: number, before?: number): { runs: RunView[]; next: number | null } {
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
    const rows = this.#sql(`SELECT id, seq FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`)
      .all(...args, limit + 1) as { id: string; seq: number }[];
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    const runs = page.map((r) => this.#runs.getRun(r.id)).filter((r): r is RunView => r !== undefined);
    return { runs, next: more ? page[page.length - 1]!.seq : null };
  }

  /** The run that is active now (running, else the oldest queued), per pipeline. */
  current(pipeline: string): RunView | undefined {
    const row = (this.#sql("SELECT id FROM runs WHERE pipeline = ? AND status = 'running' ORDER BY seq DESC LIMIT 1").get(pipeline) ??
      this.#sql("SELECT id FROM runs WHERE pipeline = ? AND status = 'queued' ORDER BY seq LIMIT 1").get(pipeline)) as { id: string } | undefined;
    return row ? this.#runs.getRun(row.id) : undefined;
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
