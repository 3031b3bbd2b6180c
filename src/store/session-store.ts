import { createHash, randomBytes } from 'node:crypto';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { statementCache } from './sql.ts';

export type SessionProvider = 'github' | 'oidc' | 'token';

export interface SessionView {
  provider: SessionProvider;
  login: string;
  /** The identifiers `auth.users` may name: GitHub login, OIDC subject and e-mail, or the token's name. */
  keys: string[];
  role: string;
  address: string | null;
  createdAt: string;
  expiresAt: string;
}

export interface NewSession {
  provider: SessionProvider;
  login: string;
  keys: string[];
  role: string;
  address: string | null;
  ttlMs: number;
}

/** The session id as stored: a SHA-256, so a copy of the database opens no session. */
function hashOf(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/** Browser sessions. The id given to the browser is 256 random bits; only its hash is kept. */
export class SessionStore {
  readonly #sql: (sql: string) => StatementSync;

  constructor(db: DatabaseSync) {
    this.#sql = statementCache(db);
  }


  /** Creates a session and returns the id for the cookie (never stored as such). */
  create(s: NewSession, now = Date.now()): string {
    const id = randomBytes(32).toString('base64url');
    this.#sql('INSERT INTO sessions (id_hash, provider, login, keys, role, address, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(hashOf(id), s.provider, s.login, JSON.stringify(s.keys), s.role, s.address, new Date(now).toISOString(), new Date(now + s.ttlMs).toISOString());
    return id;
  }

  /** The live session with this id, or undefined (unknown, malformed or expired). */
  get(id: string, now = Date.now()): SessionView | undefined {
    if (!/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const row = this.#sql('SELECT * FROM sessions WHERE id_hash = ?').get(hashOf(id)) as Record<string, string> | undefined;
    if (!row || Date.parse(row.expires_at!) <= now) return undefined;
    return {
      provider: row.provider as SessionProvider,
      login: row.login!,
      keys: JSON.parse(row.keys!) as string[],
      role: row.role!,
      address: row.address ?? null,
      createdAt: row.created_at!,
      expiresAt: row.expires_at!,
    };
  }

  delete(id: string): boolean {
    return Number(this.#sql('DELETE FROM sessions WHERE id_hash = ?').run(hashOf(id)).changes) > 0;
  }

  /** Removes expired sessions; returns how many. */
  pruneExpired(now = Date.now()): number {
    return Number(this.#sql('DELETE FROM sessions WHERE expires_at <= ?').run(new Date(now).toISOString()).changes);
  }
}
