-- Browser sessions (sign-in with GitHub, OpenID Connect or a token). The cookie holds a
-- random id; only its SHA-256 is stored, so a copy of the database opens no session.
CREATE TABLE sessions (
  id_hash    TEXT PRIMARY KEY,
  provider   TEXT NOT NULL,            -- github | oidc | token
  login      TEXT NOT NULL,            -- the actor's name in the audit trail and on runs
  keys       TEXT NOT NULL,            -- JSON: the identifiers auth.users may name (login, subject, e-mail, token name)
  role       TEXT NOT NULL,            -- at sign-in; re-derived from the config on every request
  address    TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
