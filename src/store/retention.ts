import type { Sql } from './sql.ts';

/** What the store forgets: old finished runs (with their stages, logs, results) and old deliveries. */
export class Retention {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * Removes finished runs beyond the newest `keep` or older than `maxAgeMs`. Runs behind
   * a deployment that still serves are kept; deployment history itself is kept (it is
   * small, and rollback needs it).
   */
  prune(pipeline: string, keep: number, maxAgeMs: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return this.#sql.transaction(() => {
      const res = this.#sql.run(
        `DELETE FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'cancelled', 'superseded')
           AND id NOT IN (SELECT run_id FROM deployments WHERE pipeline = ? AND replaced_at IS NULL)
           AND (seq NOT IN (SELECT seq FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT ?) OR created_at < ?)`,
        pipeline, pipeline, pipeline, keep, cutoff,
      );
      // Set-aside events of runs that are gone have nobody left to explain them to.
      this.#sql.run('DELETE FROM set_aside_events WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT id FROM runs)');
      return res.changes;
    });
  }

  /** Webhook deliveries are only needed to answer redeliveries, which come within days. */
  pruneDeliveries(maxAgeMs: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return this.#sql.run('DELETE FROM deliveries WHERE received_at < ?', cutoff).changes;
  }
}
