import { text, type Sql } from './sql.ts';

export interface PauseView {
  reason: string;
  by: string;
  at: string;
}

/** Paused pipelines: new pushes wait, visible, until someone resumes. */
export class PauseRepository {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  pause(pipeline: string, reason: string, by: string): void {
    this.#sql.run(
      'INSERT INTO pipeline_pauses (pipeline, reason, paused_by, at) VALUES (?, ?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET reason = excluded.reason, paused_by = excluded.paused_by, at = excluded.at',
      pipeline, reason, by, new Date().toISOString(),
    );
  }

  resume(pipeline: string): void {
    this.#sql.run('DELETE FROM pipeline_pauses WHERE pipeline = ?', pipeline);
  }

  pauseOf(pipeline: string): PauseView | undefined {
    const row = this.#sql.get('SELECT reason, paused_by, at FROM pipeline_pauses WHERE pipeline = ?', pipeline);
    return row ? { reason: text(row, 'reason'), by: text(row, 'paused_by'), at: text(row, 'at') } : undefined;
  }
}
