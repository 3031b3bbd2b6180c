import { createHash, timingSafeEqual } from 'node:crypto';
import { roleAtLeast, type AuthConfig, type Role } from '../../config/auth.ts';
import type { SessionStore, SessionView } from '../../store/session-store.ts';

/** Who is asking: a signed-in person, a token, or nobody (public read access). */
export interface Actor {
  /** Login, token name ("admin" for the admin token), or "anonymous". */
  name: string;
  role: Role;
  via: 'session:github' | 'session:oidc' | 'session:token' | 'token' | 'anonymous';
  /** Per-client key for limits (session or token), undefined when anonymous. */
  key: string | undefined;
  /** The session's id hash prefix: binds CSRF tokens to the session. */
  session: string | undefined;
}

export type Access = 'public' | Role;

const sha = (s: string) => createHash('sha256').update(s).digest();

/**
 * Turns credentials into an Actor, against the config as it is now: a session's role is
 * derived again on every request, so removing a user or a token from the config ends
 * their sessions at the next restart.
 */
export class Authenticator {
  readonly #auth: AuthConfig;
  readonly #sessions: SessionStore;
  /** Token digests, compared in constant time (digests have equal length whatever was sent). */
  readonly #tokens: { name: string; role: Role; digest: Buffer }[];
  readonly #users: Map<string, Role>;

  constructor(auth: AuthConfig, sessions: SessionStore) {
    this.#auth = auth;
    this.#sessions = sessions;
    this.#tokens = [
      ...(auth.adminToken ? [{ name: 'admin', role: 'admin' as Role, digest: sha(auth.adminToken.reveal()) }] : []),
      ...auth.tokens.map((t) => ({ name: t.name, role: t.role, digest: sha(t.token.reveal()) })),
    ];
    // GitHub logins and e-mail addresses are case-insensitive; subjects practically so.
    this.#users = new Map(Object.entries(auth.users).map(([k, v]) => [k.toLowerCase(), v]));
  }

  /**
   * `Authorization: Bearer <token>` (scheme case-insensitive, RFC 7235). Returns
   * undefined for a header that is not a bearer token or names no configured token.
   */
  fromAuthorization(header: string): { name: string; role: Role } | undefined {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return undefined;
    return this.tokenNamed(m[1]!);
  }

  /** The configured token with this value (every candidate is compared: no early exit). */
  tokenNamed(value: string): { name: string; role: Role } | undefined {
    const given = sha(value);
    let found: { name: string; role: Role } | undefined;
    for (const t of this.#tokens) if (timingSafeEqual(given, t.digest) && !found) found = { name: t.name, role: t.role };
    return found;
  }

  /** Role of a person (GitHub login, OIDC subject or e-mail), or undefined: not allowed. */
  roleFor(keys: readonly string[]): Role | undefined {
    for (const k of keys) {
      const role = this.#users.get(k.toLowerCase());
      if (role) return role;
    }
    return this.#auth.defaultRole;
  }

  /** The actor behind a session id (from the signed cookie), if the session is alive and still allowed. */
  fromSession(id: string): Actor | undefined {
    const s = this.#sessions.get(id);
    if (!s) return undefined;
    const role = this.#sessionRole(s);
    if (!role) return undefined;
    const session = createHash('sha256').update(id).digest('hex').slice(0, 24);
    return { name: s.login, role, via: `session:${s.provider}`, key: `s:${session}`, session };
  }

  #sessionRole(s: SessionView): Role | undefined {
    if (s.provider === 'token') {
      const name = s.keys[0];
      return this.#tokens.find((t) => t.name === name)?.role;
    }
    return this.roleFor(s.keys);
  }
}

export function allowed(actor: Actor | undefined, need: Access): 'ok' | 'unauthenticated' | 'forbidden' {
  if (need === 'public') return 'ok';
  if (!actor) return 'unauthenticated';
  if (roleAtLeast(actor.role, need)) return 'ok';
  // Anonymous readers (auth.public) asking to act are not signed in: 401, not 403.
  return actor.via === 'anonymous' ? 'unauthenticated' : 'forbidden';
}

export const ANONYMOUS: Actor = { name: 'anonymous', role: 'viewer', via: 'anonymous', key: undefined, session: undefined };
