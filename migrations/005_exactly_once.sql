-- Exactly-once application of worker events (src/store/event-log.ts, src/pipeline/lifecycle.ts).
-- Per run: the execution (one worker's take of the run) whose events apply, the last
-- event number applied from it, who finished the run, and a deploy waiting for a worker
-- that reaches a swarm manager.
ALTER TABLE runs ADD COLUMN exec TEXT;
ALTER TABLE runs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN finished_by TEXT;
ALTER TABLE runs ADD COLUMN handoff_at TEXT;

-- How far each Redis event stream has been applied: written in the same transaction
-- as the events, so a batch read again after a crash (applied, not acknowledged) is
-- recognised and skipped.
CREATE TABLE event_streams (
  stream     TEXT PRIMARY KEY,
  last_id    TEXT NOT NULL,
  applied    INTEGER NOT NULL DEFAULT 0,
  updated_at TEXT NOT NULL
);

-- An event whose application failed, and how often: retried a few times, then set aside.
CREATE TABLE event_failures (
  stream     TEXT NOT NULL,
  entry_id   TEXT NOT NULL,
  attempts   INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  PRIMARY KEY (stream, entry_id)
);

-- Events that could not be applied (malformed, or failing every time): kept for a
-- person to look at, and counted on their run (`setAsideEvents`), instead of blocking
-- every event behind them.
CREATE TABLE set_aside_events (
  seq      INTEGER PRIMARY KEY AUTOINCREMENT,
  stream   TEXT NOT NULL,
  entry_id TEXT NOT NULL,
  run_id   TEXT,
  payload  TEXT NOT NULL,
  error    TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  at       TEXT NOT NULL
);
CREATE INDEX set_aside_by_run ON set_aside_events (run_id);

-- Facts about this store itself: its id names the event stream workers report to.
CREATE TABLE store_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
