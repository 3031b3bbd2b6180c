import type { DatabaseSync, SQLInputValue, SQLOutputValue, StatementSync } from 'node:sqlite';
import { transaction } from './db.ts';

/** A row as node:sqlite returns it. Read it through the helpers below, never cast. */
export type Row = Record<string, SQLOutputValue>;

/**
 * The store's database handle, shared by its repositories: statements prepared once
 * per SQL text (preparing costs more than most of these queries), typed reads, and
 * transactions that nest (an inner one joins the outer).
 */
export class Sql {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  #depth = 0;

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #prepare(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  run(sql: string, ...params: SQLInputValue[]): { changes: number } {
    return { changes: Number(this.#prepare(sql).run(...params).changes) };
  }

  get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#prepare(sql).get(...params);
  }

  all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#prepare(sql).all(...params);
  }

  iterate(sql: string, ...params: SQLInputValue[]): Iterable<Row> {
    return this.#prepare(sql).iterate(...params) as Iterable<Row>;
  }

  /** Runs `fn` in one transaction; inside another, it joins that one. */
  transaction<T>(fn: () => T): T {
    if (this.#depth > 0) return fn();
    this.#depth++;
    try {
      return transaction(this.#db, fn);
    } finally {
      this.#depth--;
    }
  }

  /**
   * Runs `fn` inside a savepoint of the current transaction: if it throws, what it
   * wrote is undone and the transaction goes on.
   */
  savepoint<T>(fn: () => T): T {
    this.#db.exec('SAVEPOINT one_event');
    try {
      const result = fn();
      this.#db.exec('RELEASE one_event');
      return result;
    } catch (err) {
      this.#db.exec('ROLLBACK TO one_event');
      this.#db.exec('RELEASE one_event');
      throw err;
    }
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * Statements prepared once per SQL text, for the stores that hold node:sqlite's handle
 * themselves (preparing costs more than most of their queries).
 */
export function statementCache(db: DatabaseSync): (sql: string) => StatementSync {
  const statements = new Map<string, StatementSync>();
  return (sql) => {
    let stmt = statements.get(sql);
    if (!stmt) statements.set(sql, (stmt = db.prepare(sql)));
    return stmt;
  };
}

export function text(row: Row, key: string): string {
  const v = row[key];
  if (typeof v !== 'string') throw new TypeError(`column ${key}: expected text, got ${v === null ? 'null' : typeof v}`);
  return v;
}

export function textOrNull(row: Row, key: string): string | null {
  const v = row[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw new TypeError(`column ${key}: expected text, got ${typeof v}`);
  return v;
}

export function int(row: Row, key: string): number {
  const v = row[key];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new TypeError(`column ${key}: expected an integer, got ${v === null ? 'null' : typeof v}`);
}

/** A text column holding one of a closed set of values. */
export function oneOf<T extends string>(row: Row, key: string, values: readonly T[]): T {
  const v = text(row, key);
  if (!(values as readonly string[]).includes(v)) throw new TypeError(`column ${key}: unexpected value "${v}"`);
  return v as T;
}
