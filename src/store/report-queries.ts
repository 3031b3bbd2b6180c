import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { RunStatus } from '../pipeline/states.ts';
import { statementCache } from './sql.ts';

/**
 * Read-only questions the report observer and the metrics ask about runs, beyond what
 * RunStore offers. Never writes.
 */
export class ReportQueries {
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync) {
    this.#sql = statementCache(db);
  }


  /** How the pipeline's last decided run before `runId` ended (succeeded, failed or rolled back), if any: a success after either is "recovered". */
  previousOutcome(pipeline: string, runId: string): RunStatus | undefined {
    const row = this.#sql(
      "SELECT status FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'rolled_back') AND seq < (SELECT seq FROM runs WHERE id = ?) ORDER BY seq DESC LIMIT 1",
    ).get(pipeline, runId) as { status: RunStatus } | undefined;
    return row?.status;
  }

  /** When the pipeline last had a successful run (ISO), if ever. */
  lastSuccessAt(pipeline: string): string | undefined {
    const row = this.#sql("SELECT MAX(finished_at) AS at FROM runs WHERE pipeline = ? AND status = 'succeeded'").get(pipeline) as { at: string | null } | undefined;
    return row?.at ?? undefined;
  }

  /** Runs waiting to start, per pipeline (held by a pause included). */
  waitingCounts(): Map<string, number> {
    const rows = this.#sql("SELECT pipeline, COUNT(*) AS n FROM runs WHERE status = 'queued' GROUP BY pipeline").all() as { pipeline: string; n: number }[];
    return new Map(rows.map((r) => [r.pipeline, r.n]));
  }

  /** When the delivery that created the run was received (the push's arrival), if it came from one. */
  deliveryReceivedAt(deliveryId: string): string | undefined {
    const row = this.#sql('SELECT received_at FROM deliveries WHERE id = ?').get(deliveryId) as { received_at: string } | undefined;
    return row?.received_at;
  }
}
