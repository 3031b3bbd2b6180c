-- Latest push wins: a run replaced before it started links to the run that replaced it.
ALTER TABLE runs ADD COLUMN superseded_by TEXT;
-- Who asked for a cancel, and why (set when requested, before the worker stops).
ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
CREATE INDEX runs_by_pipeline_status ON runs (pipeline, status);
