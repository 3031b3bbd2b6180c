import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { statementCache } from './sql.ts';

export type AuditResult = 'ok' | 'refused' | 'failed';

export interface AuditEntry {
  /** Login, token name, or "anonymous". */
  actor: string;
  role: string | null;
  /** How the actor proved who they are: session:github, session:oidc, session:token, token, anonymous. */
  via: string;
  action: string;
  /** Pipeline name or run id, when the action has one. */
  target: string | null;
  result: AuditResult;
  detail: string | null;
  address: string | null;
}

export interface AuditView extends AuditEntry {
  seq: number;
  at: string;
}

export interface AuditFilter {
  actor?: string | undefined;
  action?: string | undefined;
  target?: string | undefined;
  result?: AuditResult | undefined;
}

/** Longest detail kept: a message from a failure, never a payload. */
const MAX_DETAIL = 500;

/** The audit trail: append-only, read newest first with a cursor. */
export class AuditStore {
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync) {
    this.#sql = statementCache(db);
  }


  record(e: AuditEntry, at = new Date()): number {
    const detail = e.detail && e.detail.length > MAX_DETAIL ? `${e.detail.slice(0, MAX_DETAIL)}…` : e.detail;
    const res = this.#sql('INSERT INTO audit_log (at, actor, role, via, action, target, result, detail, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(at.toISOString(), e.actor, e.role, e.via, e.action, e.target, e.result, detail, e.address);
    return Number(res.lastInsertRowid);
  }

  /** Newest first; pass `next` back as `before` for the next page. */
  list(filter: AuditFilter, limit: number, before?: number): { entries: AuditView[]; next: number | null } {
    const where: string[] = [];
    const args: SQLInputValue[] = [];
    for (const key of ['actor', 'action', 'target', 'result'] as const) {
      const v = filter[key];
      if (v !== undefined && v !== '') {
        where.push(`${key} = ?`);
        args.push(v);
      }
    }
    if (before !== undefined) {
      where.push('seq < ?');
      args.push(before);
    }
    const rows = this.#sql(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`)
      .all(...args, limit + 1) as unknown as AuditView[];
    const more = rows.length > limit;
    const entries = rows.slice(0, limit).map((r) => ({ ...r }));
    return { entries, next: more ? entries[entries.length - 1]!.seq : null };
  }

  /** The distinct actors and actions seen, for the audit page's filters. */
  facets(): { actors: string[]; actions: string[] } {
    const actors = (this.#sql('SELECT DISTINCT actor FROM audit_log ORDER BY actor LIMIT 500').all() as { actor: string }[]).map((r) => r.actor);
    const actions = (this.#sql('SELECT DISTINCT action FROM audit_log ORDER BY action').all() as { action: string }[]).map((r) => r.action);
    return { actors, actions };
  }

  /** Removes entries older than `maxAgeMs`; returns how many. */
  prune(maxAgeMs: number, now = Date.now()): number {
    return Number(this.#sql('DELETE FROM audit_log WHERE at < ?').run(new Date(now - maxAgeMs).toISOString()).changes);
  }
}
