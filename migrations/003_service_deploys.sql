-- How each service's deploy truly ended, per run (several per run: a fleet rollback
-- adds the restored services' results).
CREATE TABLE service_deploys (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id         TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  service        TEXT NOT NULL,
  outcome        TEXT NOT NULL,
  previous_image TEXT,
  final_image    TEXT,
  task_errors    TEXT NOT NULL,
  message        TEXT NOT NULL,
  at             TEXT NOT NULL
);
CREATE INDEX service_deploys_by_run ON service_deploys (run_id, seq);
