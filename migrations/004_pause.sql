-- A paused pipeline holds new pushes as waiting runs until someone resumes it
-- (set by a manual rollback, so the next push does not silently undo it).
CREATE TABLE pipeline_pauses (
  pipeline  TEXT PRIMARY KEY,
  reason    TEXT NOT NULL,
  paused_by TEXT NOT NULL,
  at        TEXT NOT NULL
);
-- A rollback run deploys this exact image instead of building.
ALTER TABLE runs ADD COLUMN target_image TEXT;
