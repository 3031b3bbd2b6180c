-- What the deployer posts to GitHub about each run. `github_reports` is one row per run
-- that GitHub has heard of (or will): the ids GitHub gave us and the last state queued.
-- `github_steps` is the ordered outbox of requests for that run; a report queue job
-- posts the pending ones in order and records each attempt (reports never block a run).
CREATE TABLE github_reports (
  run_id           TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  pipeline         TEXT NOT NULL,
  repo             TEXT NOT NULL,
  commit_sha       TEXT NOT NULL,
  environment      TEXT NOT NULL,
  deployment_id    INTEGER,
  check_run_id     INTEGER,
  -- The newest deployment state queued (queued, in_progress, success, failure, error, inactive).
  deployment_state TEXT,
  -- The last check run / commit status content queued, to post only changes.
  check_key        TEXT,
  created_at       TEXT NOT NULL
);
CREATE INDEX github_reports_by_env ON github_reports (pipeline, environment, deployment_state);

CREATE TABLE github_steps (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  pipeline   TEXT NOT NULL,
  -- deployment | deployment_status | check_run | commit_status
  kind       TEXT NOT NULL,
  -- What it posts, for people: the deployment state, check status/conclusion or commit state.
  state      TEXT NOT NULL,
  -- The request's fields (JSON; never credentials).
  body       TEXT NOT NULL,
  -- pending | sent | skipped (a newer update of the same check replaced it) | refused (GitHub said no for good) | failed (gave up retrying)
  status     TEXT NOT NULL DEFAULT 'pending',
  attempts   INTEGER NOT NULL DEFAULT 0,
  last_code  INTEGER,
  last_error TEXT,
  created_at TEXT NOT NULL,
  done_at    TEXT
);
CREATE INDEX github_steps_by_run ON github_steps (run_id, seq);
CREATE INDEX github_steps_pending ON github_steps (status) WHERE status = 'pending';
CREATE INDEX github_steps_by_pipeline ON github_steps (pipeline, seq DESC);

-- The observer's sweep looks for runs that finished lately (some end without a worker event).
CREATE INDEX runs_by_finished ON runs (finished_at);
