import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Config } from '../../src/config/types.ts';

/**
 * Reads a daemon's store the way an operator would: a separate read-only connection to
 * its SQLite file (WAL: it sees every committed transaction). The store itself keeps
 * its database private.
 */
export function readStore<T>(config: Pick<Config, 'dataDir'>, read: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(join(config.dataDir, 'deployer.db'), { readOnly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** Rows in `table` (optionally `where` …, with params). */
export function rowCount(config: Pick<Config, 'dataDir'>, table: string, where = '1 = 1', ...params: (string | number)[]): number {
  return readStore(config, (db) => Number((db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).get(...params) as { n: number | bigint }).n));
}
