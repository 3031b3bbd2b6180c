import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { transaction } from './db.ts';
import type { AttemptView } from './report-store.ts';
import { statementCache } from './sql.ts';

export type NotificationStatus = 'pending' | 'sent' | 'refused' | 'failed';

export interface NotificationRow {
  id: string;
  pipeline: string;
  runId: string | null;
  target: number;
  channel: 'slack' | 'webhook';
  label: string;
  event: string;
  body: string;
  status: NotificationStatus;
  attempts: number;
  lastCode: number | null;
  lastError: string | null;
  createdAt: string;
  doneAt: string | null;
}

export interface NewNotification {
  id: string;
  /** Receiver + subject + event: the same notification is never created twice. */
  dedupe: string;
  pipeline: string;
  runId: string | null;
  target: number;
  channel: 'slack' | 'webhook';
  label: string;
  event: string;
  body: string;
}

/** Notifications and their attempts (migration 016). Written only by the store owner's notifier. */
export class NotificationStore {
  readonly #db: DatabaseSync;
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#sql = statementCache(db);
  }


  /** Inserts the notifications not created before; returns the ids of the new ones. */
  add(list: NewNotification[]): string[] {
    if (list.length === 0) return [];
    const now = new Date().toISOString();
    return transaction(this.#db, () => {
      const created: string[] = [];
      for (const n of list) {
        const res = this.#sql(
          'INSERT OR IGNORE INTO notifications (id, dedupe, pipeline, run_id, target, channel, label, event, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        ).run(n.id, n.dedupe, n.pipeline, n.runId, n.target, n.channel, n.label, n.event, n.body, now);
        if (Number(res.changes) > 0) created.push(n.id);
      }
      return created;
    });
  }

  exists(dedupe: string): boolean {
    return this.#sql('SELECT 1 FROM notifications WHERE dedupe = ?').get(dedupe) !== undefined;
  }

  get(id: string): NotificationRow | undefined {
    const row = this.#sql('SELECT * FROM notifications WHERE id = ?').get(id) as Record<string, SQLInputValue> | undefined;
    return row ? view(row) : undefined;
  }

  /** Records one attempt and the notification's new status. */
  mark(id: string, status: NotificationStatus, attempt: AttemptView | undefined): void {
    transaction(this.#db, () => {
      if (attempt) {
        this.#sql('INSERT INTO delivery_attempts (channel, ref, at, status_code, error, ms) VALUES (?, ?, ?, ?, ?, ?)')
          .run('notify', id, attempt.at, attempt.status, attempt.error, attempt.ms);
      }
      this.#sql(
        `UPDATE notifications SET status = ?, attempts = attempts + ?, last_code = COALESCE(?, last_code), last_error = ?,
           done_at = CASE WHEN ? = 'pending' THEN NULL ELSE ? END WHERE id = ?`,
      ).run(status, attempt ? 1 : 0, attempt?.status ?? null, attempt?.error ?? null, status, new Date().toISOString(), id);
    });
  }

  pendingIds(limit = 500): string[] {
    return (this.#sql("SELECT id FROM notifications WHERE status = 'pending' ORDER BY created_at LIMIT ?").all(limit) as { id: string }[]).map((r) => r.id);
  }

  recent(pipeline: string, limit = 30): NotificationRow[] {
    return (this.#sql('SELECT * FROM notifications WHERE pipeline = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(pipeline, limit) as Record<string, SQLInputValue>[]).map(view);
  }

  ofRun(runId: string): NotificationRow[] {
    return (this.#sql('SELECT * FROM notifications WHERE run_id = ? ORDER BY created_at, rowid').all(runId) as Record<string, SQLInputValue>[]).map(view);
  }

  /** Notifications not tied to a run (drift) are kept this long. */
  prune(maxAgeMs: number): number {
    const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
    return Number(this.#sql('DELETE FROM notifications WHERE run_id IS NULL AND created_at < ?').run(cutoff).changes);
  }
}

function view(row: Record<string, SQLInputValue>): NotificationRow {
  return {
    id: row.id as string,
    pipeline: row.pipeline as string,
    runId: (row.run_id as string | null) ?? null,
    target: row.target as number,
    channel: row.channel as 'slack' | 'webhook',
    label: row.label as string,
    event: row.event as string,
    body: row.body as string,
    status: row.status as NotificationStatus,
    attempts: row.attempts as number,
    lastCode: (row.last_code as number | null) ?? null,
    lastError: (row.last_error as string | null) ?? null,
    createdAt: row.created_at as string,
    doneAt: (row.done_at as string | null) ?? null,
  };
}
