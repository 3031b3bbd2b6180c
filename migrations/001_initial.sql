-- Runs, their stages and logs, deployments, and webhook deliveries.
-- Times are ISO-8601 UTC strings; `seq` orders runs without trusting clocks.
CREATE TABLE runs (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  id             TEXT NOT NULL UNIQUE,
  pipeline       TEXT NOT NULL,
  trigger        TEXT NOT NULL,
  status         TEXT NOT NULL,
  commit_sha     TEXT,
  commit_subject TEXT,
  commit_author  TEXT,
  delivery_id    TEXT,
  requested_by   TEXT,
  image_ref      TEXT,
  image_digest   TEXT,
  error          TEXT,
  worker         TEXT,
  attempts       INTEGER NOT NULL DEFAULT 0,
  created_at     TEXT NOT NULL,
  started_at     TEXT,
  finished_at    TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, seq DESC);
CREATE INDEX runs_by_status ON runs (status);

CREATE TABLE stages (
  run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  position    INTEGER NOT NULL,
  name        TEXT NOT NULL,
  status      TEXT NOT NULL,
  started_at  TEXT,
  finished_at TEXT,
  error       TEXT,
  PRIMARY KEY (run_id, name)
);

-- Log output in chunks (one per batch the worker sent), not one row per line.
CREATE TABLE log_chunks (
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq     INTEGER NOT NULL,
  stage   TEXT,
  at      TEXT NOT NULL,
  lines   INTEGER NOT NULL,
  text    TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);

-- Which digest served on which service, from when until when (replaced_at NULL = now).
CREATE TABLE deployments (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  id           TEXT NOT NULL UNIQUE,
  pipeline     TEXT NOT NULL,
  service      TEXT NOT NULL,
  image_ref    TEXT NOT NULL,
  digest       TEXT NOT NULL,
  commit_sha   TEXT NOT NULL,
  run_id       TEXT NOT NULL,
  deployed_at  TEXT NOT NULL,
  replaced_at  TEXT
);
CREATE INDEX deployments_by_pipeline ON deployments (pipeline, seq DESC);

-- Every accepted webhook delivery, recorded before it is acknowledged, so a redelivery
-- answers with the same runs instead of creating new ones.
CREATE TABLE deliveries (
  id          TEXT PRIMARY KEY,
  event       TEXT NOT NULL,
  received_at TEXT NOT NULL,
  outcome     TEXT NOT NULL
);
