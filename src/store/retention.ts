import type { Sql } from './sql.ts';

/**
 * What the store forgets: old finished runs (with their stages, logs, results) and old
 * deliveries. Work is done in batches, one small transaction each, so the caller can
 * yield to the event loop between them (src/queue/reconciler.ts): thousands of runs
 * deleted in one go once blocked start-up and every request for seconds.
 */
export class Retention {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * Removes at most `limit` finished runs (oldest first) beyond the newest `keep` or
   * older than `maxAgeMs`, in one transaction; returns how many. Runs behind a
   * deployment that still serves are kept; deployment history itself is kept (it is
   * small, and rollback needs it).
   */
  pruneBatch(pipeline: string, keep: number, maxAgeMs: number, limit: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return this.#sql.transaction(() => {
      const res = this.#sql.run(
        `DELETE FROM runs WHERE id IN (
           SELECT id FROM runs WHERE pipeline = ? AND status IN ('succeeded', 'failed', 'cancelled', 'superseded', 'rolled_back')
             AND id NOT IN (SELECT run_id FROM deployments WHERE pipeline = ? AND replaced_at IS NULL)
             AND (seq < (SELECT COALESCE(MIN(seq), 9223372036854775807) FROM (SELECT seq FROM runs WHERE pipeline = ? ORDER BY seq DESC LIMIT ?)) OR created_at < ?)
             ORDER BY seq LIMIT ?)`,
        pipeline, pipeline, pipeline, keep, cutoff, limit,
      );
      return res.changes;
    });
  }

  /** Set-aside events of runs that are gone have nobody left to explain them to. */
  forgetOrphans(): number {
    return this.#sql.run('DELETE FROM set_aside_events WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT id FROM runs)').changes;
  }

  /** All of pruneBatch at once (tools and tests; the daemon prunes in batches). */
  prune(pipeline: string, keep: number, maxAgeMs: number): number {
    let total = 0;
    for (let n = -1; n !== 0; total += n) n = this.pruneBatch(pipeline, keep, maxAgeMs, 500);
    this.forgetOrphans();
    return total;
  }

  /**
   * At most `limit` deliveries older than `maxAgeMs`: they are only needed to answer
   * redeliveries, which come within days.
   */
  pruneDeliveriesBatch(maxAgeMs: number, limit: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return this.#sql.run('DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries WHERE received_at < ? LIMIT ?)', cutoff, limit).changes;
  }
}
