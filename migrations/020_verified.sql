-- Verified deploys (issue #15): what users got, per run, as the worker measured it
-- (JSON of src/pipeline/ports.ts VerifyResult / ProbeResult), and the run a
-- follow-up run (onFailure: previous-good-push) was started after.
ALTER TABLE runs ADD COLUMN verify_json TEXT;
ALTER TABLE runs ADD COLUMN probe_json TEXT;
ALTER TABLE runs ADD COLUMN verify_previous_json TEXT;
ALTER TABLE runs ADD COLUMN follows_run TEXT;
CREATE INDEX runs_follows ON runs (follows_run) WHERE follows_run IS NOT NULL;
