-- Who did what, when, from where: every write through the API or the UI, sign-in and
-- sign-out, refused attempts by signed-in users, and the use of tokens.
CREATE TABLE audit_log (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,               -- login, token name, or "anonymous"
  role    TEXT,
  via     TEXT NOT NULL,               -- session:github | session:oidc | session:token | token | anonymous
  action  TEXT NOT NULL,               -- sign-in, sign-out, rebuild, cancel, rollback, pause, resume, start, check-now, token-use
  target  TEXT,                        -- pipeline name or run id
  result  TEXT NOT NULL,               -- ok | refused | failed
  detail  TEXT,
  address TEXT
);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_by_action ON audit_log (action, seq);
CREATE INDEX audit_by_target ON audit_log (target, seq);
