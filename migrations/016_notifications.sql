-- Chat messages and signed webhooks, one row per (receiver, run or drift, event): the
-- row's id is the webhook's `webhook-id`, the same on every retry. The body is what is
-- sent (never a secret: URLs and signing keys stay in the config).
CREATE TABLE notifications (
  id         TEXT PRIMARY KEY,
  dedupe     TEXT NOT NULL UNIQUE,
  pipeline   TEXT NOT NULL,
  run_id     TEXT REFERENCES runs (id) ON DELETE CASCADE,
  -- Position of the receiver in the config's notify list, its kind, and a label without secrets.
  target     INTEGER NOT NULL,
  channel    TEXT NOT NULL,
  label      TEXT NOT NULL,
  event      TEXT NOT NULL,
  body       TEXT NOT NULL,
  -- pending | sent | refused (4xx) | failed (gave up retrying)
  status     TEXT NOT NULL DEFAULT 'pending',
  attempts   INTEGER NOT NULL DEFAULT 0,
  last_code  INTEGER,
  last_error TEXT,
  created_at TEXT NOT NULL,
  done_at    TEXT
);
CREATE INDEX notifications_by_pipeline ON notifications (pipeline, created_at DESC);
CREATE INDEX notifications_pending ON notifications (status) WHERE status = 'pending';

-- Every HTTP attempt of a report or notification: when, the response code (NULL: no
-- response: refused connection, timeout) and the error, shown on the pipeline page.
CREATE TABLE delivery_attempts (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  -- github (ref = github_steps.seq) | notify (ref = notifications.id)
  channel     TEXT NOT NULL,
  ref         TEXT NOT NULL,
  at          TEXT NOT NULL,
  status_code INTEGER,
  error       TEXT,
  ms          INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_by_ref ON delivery_attempts (channel, ref, seq);

-- Problems an operator must fix (e.g. GitHub refuses our credentials), shown on the
-- pipeline until the same source succeeds again.
CREATE TABLE pipeline_warnings (
  pipeline TEXT NOT NULL,
  source   TEXT NOT NULL,
  message  TEXT NOT NULL,
  at       TEXT NOT NULL,
  PRIMARY KEY (pipeline, source)
);
