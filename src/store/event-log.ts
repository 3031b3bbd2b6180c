import { errorMessage, oneLine } from '../lib/errors.ts';
import { applyEvent, type LifecycleEvent, type RunRecord, type Verdict } from '../pipeline/lifecycle.ts';
import type { DeploymentRepository } from './deployments.ts';
import type { LogRepository } from './logs.ts';
import type { RunRepository, StoredRun } from './runs.ts';
import { int, text, type Sql } from './sql.ts';

/** One entry read from an event stream: its id, and the event (or why it is not one). */
export interface StreamEntry {
  id: string;
  event: LifecycleEvent | undefined;
  /** The entry as read, kept if it is set aside. */
  raw: string;
  /** Why `event` is undefined (malformed JSON, unknown type, missing field). */
  invalid?: string;
}

export interface IgnoredEvent {
  id: string;
  event: LifecycleEvent;
  why: 'duplicate' | 'stale' | 'refused' | 'no_run';
  detail: string;
}

export interface SetAsideEvent {
  id: string;
  runId: string | null;
  error: string;
  attempts: number;
  /** The failure itself, when the application threw (for the log: stack and cause). */
  cause?: unknown;
}

export interface BatchOutcome {
  /** Events that changed something, in stream order. */
  applied: LifecycleEvent[];
  /** Events the lifecycle turned down (they change nothing). */
  ignored: IgnoredEvent[];
  /** Entries applied by an earlier delivery of the same batch (read again after a crash). */
  alreadyApplied: number;
  /** Entries that could not be applied and were set aside now. */
  setAside: SetAsideEvent[];
  /** Ids of every entry dealt with for good: acknowledge these. */
  done: string[];
  /** The entry whose application failed and is to be tried again (nothing after it was looked at). */
  retry?: { id: string; error: unknown; attempts: number };
}

/** Stream ids are "<ms>-<n>": compared as numbers, part by part. */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('-').map(Number);
  const [bm = 0, bn = 0] = b.split('-').map(Number);
  return am - bm || an - bn;
}

/**
 * Applies worker events to the store, exactly once. A batch is applied in one
 * transaction that also records how far the stream has been applied, so a batch read
 * again (the store owner died between applying and acknowledging it) is recognised and
 * skipped; within a run, the lifecycle drops a repeated or stale event by its stamp.
 * An entry whose application throws is retried (on the next read) up to
 * `maxAttempts` times, then set aside — recorded with its error and counted on its
 * run — so it cannot block the events behind it.
 */
export class EventLog {
  readonly #sql: Sql;
  readonly #runs: RunRepository;
  readonly #logs: LogRepository;
  readonly #deployments: DeploymentRepository;
  readonly #maxAttempts: number;

  constructor(opts: { sql: Sql; runs: RunRepository; logs: LogRepository; deployments: DeploymentRepository; maxAttempts?: number }) {
    this.#sql = opts.sql;
    this.#runs = opts.runs;
    this.#logs = opts.logs;
    this.#deployments = opts.deployments;
    this.#maxAttempts = opts.maxAttempts ?? 3;
  }

  /** The id of the last entry of `stream` dealt with, if any. */
  lastApplied(stream: string): string | undefined {
    const row = this.#sql.get('SELECT last_id FROM event_streams WHERE stream = ?', stream);
    return row ? text(row, 'last_id') : undefined;
  }

  applyBatch(stream: string, entries: readonly StreamEntry[]): BatchOutcome {
    const out: BatchOutcome = { applied: [], ignored: [], alreadyApplied: 0, setAside: [], done: [] };
    return this.#sql.transaction(() => {
      const last = this.lastApplied(stream);
      const runs = new Map<string, { stored: StoredRun | undefined; state: StoredRun['state'] | undefined }>();
      let newest: string | undefined;
      let applied = 0;
      for (const entry of entries) {
        if (last !== undefined && compareStreamIds(entry.id, last) <= 0) {
          out.alreadyApplied++;
          out.done.push(entry.id);
          continue;
        }
        if (!entry.event) {
          // It will never parse: no point in trying again.
          out.setAside.push(this.#setAside(stream, entry, entry.invalid ?? 'not an event', 1));
        } else {
          try {
            const verdict = this.#sql.savepoint(() => this.#applyOne(entry.event!, runs));
            if (verdict.applied) {
              out.applied.push(entry.event);
              applied++;
            } else {
              out.ignored.push({ id: entry.id, event: entry.event, why: verdict.why, detail: verdict.detail });
            }
            this.#sql.run('DELETE FROM event_failures WHERE stream = ? AND entry_id = ?', stream, entry.id);
          } catch (err) {
            const attempts = this.#failures(stream, entry.id) + 1;
            if (attempts < this.#maxAttempts) {
              this.#sql.run(
                'INSERT INTO event_failures (stream, entry_id, attempts, last_error) VALUES (?, ?, ?, ?) ON CONFLICT (stream, entry_id) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error',
                stream, entry.id, attempts, oneLine(errorMessage(err)),
              );
              out.retry = { id: entry.id, error: err, attempts };
              break;
            }
            this.#sql.run('DELETE FROM event_failures WHERE stream = ? AND entry_id = ?', stream, entry.id);
            out.setAside.push({ ...this.#setAside(stream, entry, oneLine(errorMessage(err)), attempts), cause: err });
          }
        }
        out.done.push(entry.id);
        newest = entry.id;
      }
      for (const [id, r] of runs) if (r.stored && r.state && r.state !== r.stored.state) this.#runs.saveState(id, r.stored.state, r.state);
      if (newest !== undefined) {
        this.#sql.run(
          `INSERT INTO event_streams (stream, last_id, applied, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (stream) DO UPDATE SET last_id = excluded.last_id, applied = applied + excluded.applied, updated_at = excluded.updated_at`,
          stream, newest, applied, new Date().toISOString(),
        );
      }
      return out;
    });
  }

  /** Applies one event in a transaction of its own (store-side decisions, tests, tools). */
  apply(event: LifecycleEvent): Verdict | { applied: false; why: 'no_run'; detail: string } {
    return this.#sql.transaction(() => {
      const runs = new Map<string, { stored: StoredRun | undefined; state: StoredRun['state'] | undefined }>();
      const verdict = this.#applyOne(event, runs);
      const r = runs.get(event.runId);
      if (r?.stored && r.state && r.state !== r.stored.state) this.#runs.saveState(event.runId, r.stored.state, r.state);
      return verdict;
    });
  }

  /** Number of entries set aside so far. */
  setAsideCount(): number {
    return int(this.#sql.get('SELECT COUNT(*) AS n FROM set_aside_events')!, 'n');
  }

  #applyOne(
    event: LifecycleEvent,
    runs: Map<string, { stored: StoredRun | undefined; state: StoredRun['state'] | undefined }>,
  ): Verdict | { applied: false; why: 'no_run'; detail: string } {
    let r = runs.get(event.runId);
    if (!r) {
      const stored = this.#runs.loadState(event.runId);
      r = { stored, state: stored?.state };
      runs.set(event.runId, r);
    }
    if (!r.stored || !r.state) return { applied: false, why: 'no_run', detail: `no run ${event.runId}` };
    const verdict = applyEvent(r.state, event);
    if (!verdict.applied) return verdict;
    for (const record of verdict.records) this.#write(r.stored.pipeline, event.runId, record);
    // Only once its records are written: a failure above leaves the cached state as it was.
    r.state = verdict.run;
    return verdict;
  }

  #write(pipeline: string, runId: string, record: RunRecord): void {
    switch (record.kind) {
      case 'log':
        this.#logs.append(runId, record.stage, record.at, record.lines);
        return;
      case 'service.result':
        this.#deployments.recordServiceResult(runId, record.at, record.result);
        return;
      case 'checks':
        this.#runs.recordChecks(runId, record);
        return;
      case 'deployment':
        this.#deployments.record(pipeline, { service: record.service, image: record.image, digest: record.digest, commit: record.commit, runId, at: record.at });
        return;
    }
  }

  #failures(stream: string, id: string): number {
    const row = this.#sql.get('SELECT attempts FROM event_failures WHERE stream = ? AND entry_id = ?', stream, id);
    return row ? int(row, 'attempts') : 0;
  }

  #setAside(stream: string, entry: StreamEntry, error: string, attempts: number): SetAsideEvent {
    const runId = entry.event?.runId ?? runIdOf(entry.raw);
    this.#sql.run(
      'INSERT INTO set_aside_events (stream, entry_id, run_id, payload, error, attempts, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      stream, entry.id, runId, entry.raw.slice(0, 64 * 1024), error, attempts, new Date().toISOString(),
    );
    // Said where people look first: the run's own log (the daemon's log has it too).
    if (runId !== null && this.#runs.loadState(runId)) {
      this.#logs.append(runId, null, new Date().toISOString(), [`[deployer] a report about this run could not be applied and was set aside (stream entry ${entry.id}): ${error}`]);
    }
    return { id: entry.id, runId, error, attempts };
  }
}

/** The run an unparsable entry was about, when that much can be read. */
function runIdOf(raw: string): string | null {
  try {
    const v: unknown = JSON.parse(raw);
    const id = typeof v === 'object' && v !== null ? (v as { runId?: unknown }).runId : undefined;
    return typeof id === 'string' && id.length <= 64 ? id : null;
  } catch {
    return null;
  }
}
