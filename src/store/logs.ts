import { STAGE_NAMES, type StageName } from '../pipeline/states.ts';
import { int, text, textOrNull, type Row, type Sql } from './sql.ts';

export interface LogChunkView {
  seq: number;
  stage: StageName | null;
  lines: number;
  text: string;
}

function chunkRow(r: Row): LogChunkView {
  const stage = textOrNull(r, 'stage');
  return {
    seq: int(r, 'seq'),
    stage: stage !== null && (STAGE_NAMES as readonly string[]).includes(stage) ? (stage as StageName) : null,
    lines: int(r, 'lines'),
    text: text(r, 'text'),
  };
}

/**
 * Run logs, in chunks (one per batch of lines a worker sent), numbered per run: the
 * chunk number is also the live view's event id. Written only for events the run
 * lifecycle accepted.
 */
export class LogRepository {
  readonly #sql: Sql;
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  append(runId: string, stage: string | null, at: string, lines: string[]): void {
    if (lines.length === 0) return;
    const next = int(this.#sql.get('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM log_chunks WHERE run_id = ?', runId)!, 'n');
    this.#sql.run('INSERT INTO log_chunks (run_id, seq, stage, at, lines, text) VALUES (?, ?, ?, ?, ?, ?)', runId, next, stage, at, lines.length, `${lines.join('\n')}\n`);
  }

  /** The last `maxLines` lines of a run's log (read from the end), and how many lines it has. */
  logTail(runId: string, maxLines: number): { text: string; totalLines: number; shownLines: number } {
    const total = int(this.#sql.get('SELECT COALESCE(SUM(lines), 0) AS n FROM log_chunks WHERE run_id = ?', runId)!, 'n');
    const parts: string[] = [];
    let shown = 0;
    for (const r of this.#sql.iterate('SELECT lines, text FROM log_chunks WHERE run_id = ? ORDER BY seq DESC', runId)) {
      const lines = int(r, 'lines');
      const chunk = text(r, 'text');
      if (shown + lines > maxLines) {
        const keep = maxLines - shown;
        if (keep > 0) {
          const split = chunk.split('\n');
          parts.push(`${split.slice(split.length - 1 - keep, split.length - 1).join('\n')}\n`);
          shown += keep;
        }
        break;
      }
      parts.push(chunk);
      shown += lines;
    }
    return { text: parts.reverse().join(''), totalLines: total, shownLines: shown };
  }

  /** The newest log chunk's seq (0 when there is no log yet). */
  lastLogSeq(runId: string): number {
    return int(this.#sql.get('SELECT COALESCE(MAX(seq), 0) AS n FROM log_chunks WHERE run_id = ?', runId)!, 'n');
  }

  /** Log chunks after chunk `afterSeq` (their `seq` is the live stream's event id), oldest first. */
  logChunksAfter(runId: string, afterSeq: number, limit = 1000): LogChunkView[] {
    return this.#sql.all('SELECT seq, stage, lines, text FROM log_chunks WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?', runId, afterSeq, limit).map(chunkRow);
  }

  /**
   * Where a live view that starts at the end of the log should begin: the seq before the
   * newest chunks that hold `maxLines` lines (so it shows about the same tail as a page).
   */
  logTailStart(runId: string, maxLines: number): number {
    let lines = 0;
    let start = 0;
    for (const r of this.#sql.iterate('SELECT seq, lines FROM log_chunks WHERE run_id = ? ORDER BY seq DESC', runId)) {
      const seq = int(r, 'seq');
      if (lines >= maxLines) return seq;
      lines += int(r, 'lines');
      start = seq - 1;
    }
    return Math.max(0, start);
  }

  /**
   * The whole log, chunk by chunk, holding one chunk at a time. Each chunk is its own
   * complete query (the next seq after the last one sent, by the primary key), never a
   * statement iterator kept open across yields: statements are prepared once and shared,
   * and a second download re-running a shared iterator used to cut the first one short
   * without an error. So any number of concurrent downloads each get every byte, and
   * each holds one chunk, whatever the log's size.
   */
  *logChunks(runId: string): Generator<string> {
    let after = 0;
    for (;;) {
      const r = this.#sql.get('SELECT seq, text FROM log_chunks WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT 1', runId, after);
      if (!r) return;
      after = int(r, 'seq');
      yield text(r, 'text');
    }
  }
}
