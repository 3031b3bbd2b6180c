import { isIP } from 'node:net';
import Type from 'typebox';
import type { Secret } from '../lib/secret.ts';

/**
 * Who may do what, and how people and scripts prove who they are: the `auth` block of
 * the config (and `trustProxy`, which decides whose address the audit trail records).
 */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** viewer < operator < admin: a role may do everything the roles below it may. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface GithubSignIn {
  clientId: string;
  clientSecret: Secret;
  /** Lower-cased organisation logins; empty = any GitHub user (roles still apply). */
  allowOrgs: string[];
  /** REST API base (GitHub Enterprise: https://HOST/api/v3). */
  apiUrl: string;
  /** Where /login/oauth/authorize and /login/oauth/access_token live. */
  webUrl: string;
}

export interface OidcSignIn {
  issuer: string;
  clientId: string;
  clientSecret: Secret;
}

export interface NamedToken {
  name: string;
  role: Role;
  token: Secret;
}

export interface AuthConfig {
  /** true: anyone may read (viewer) without signing in; writes still need a role. */
  public: boolean;
  /** Break-glass token with role admin (its actor name is `admin`). */
  adminToken: Secret | undefined;
  github: GithubSignIn | undefined;
  oidc: OidcSignIn | undefined;
  /** GitHub logins, OIDC subjects or e-mail addresses → role; keys as written. */
  users: Record<string, Role>;
  /** Role of a signed-in user who is not listed; undefined: such a user is refused. */
  defaultRole: Role | undefined;
  tokens: NamedToken[];
  /** How long a browser session lasts after sign-in (ms). */
  sessionTtlMs: number;
}

const closed = { additionalProperties: false } as const;
const NonEmpty = Type.String({ minLength: 1 });
const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));
const HttpUrl = Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$' });

export const AuthSchema = Type.Object(
  {
    public: Type.Optional(Type.Boolean()),
    adminToken: Type.Optional(Type.String()),
    adminTokenFile: Type.Optional(NonEmpty),
    github: Type.Optional(
      Type.Object(
        {
          clientId: NonEmpty,
          clientSecret: Type.Optional(Type.String()),
          clientSecretFile: Type.Optional(NonEmpty),
          allowOrgs: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9-]{0,38}$' }))),
          apiUrl: Type.Optional(HttpUrl),
          webUrl: Type.Optional(HttpUrl),
        },
        closed,
      ),
    ),
    oidc: Type.Optional(
      Type.Object(
        { issuer: HttpUrl, clientId: NonEmpty, clientSecret: Type.Optional(Type.String()), clientSecretFile: Type.Optional(NonEmpty) },
        closed,
      ),
    ),
    users: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 320 }), RoleSchema)),
    defaultRole: Type.Optional(RoleSchema),
    tokens: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' }),
            role: RoleSchema,
            token: Type.Optional(Type.String()),
            tokenFile: Type.Optional(NonEmpty),
          },
          closed,
        ),
      ),
    ),
    sessionTtl: Type.Optional(Type.Union([Type.String(), Type.Number({ minimum: 0 })])),
  },
  closed,
);

/** A proxy's address or a CIDR range, e.g. 127.0.0.1, 10.0.0.0/8, ::1, fd00::/8. */
export const TrustProxySchema = Type.Array(Type.String({ minLength: 1, maxLength: 64 }));

export interface AuthIssue {
  path: string;
  message: string;
}

export interface AuthHelpers {
  /** Reads `key` or `keyFile` of `obj` (reporting problems under `path`). */
  readSecret(obj: Record<string, any>, key: string, path: string, required: boolean): Secret | undefined;
  duration(value: string | number | undefined, fallback: number, path: string): number;
  issues: AuthIssue[];
}

export const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;
const MIN_TOKEN_LENGTH = 16;

/**
 * Resolves `auth`. The admin token is required only when nothing else can act as an
 * admin or sign anyone in: a deployer must never start in a state nobody can use.
 */
export function resolveAuth(a: Record<string, any> | undefined, h: AuthHelpers): AuthConfig {
  const auth = a ?? {};
  const adminToken = h.readSecret(auth, 'adminToken', 'auth', false);
  if (adminToken && adminToken.reveal().length < MIN_TOKEN_LENGTH) {
    h.issues.push({ path: 'auth.adminToken', message: `must be at least ${MIN_TOKEN_LENGTH} characters` });
  }

  let github: GithubSignIn | undefined;
  if (auth.github) {
    const g = auth.github as Record<string, any>;
    const clientSecret = h.readSecret(g, 'clientSecret', 'auth.github', true);
    if (clientSecret) {
      github = {
        clientId: g.clientId,
        clientSecret,
        allowOrgs: ((g.allowOrgs ?? []) as string[]).map((o) => o.toLowerCase()),
        apiUrl: String(g.apiUrl ?? 'https://api.github.com').replace(/\/+$/, ''),
        webUrl: String(g.webUrl ?? 'https://github.com').replace(/\/+$/, ''),
      };
    }
  }

  let oidc: OidcSignIn | undefined;
  if (auth.oidc) {
    const o = auth.oidc as Record<string, any>;
    const clientSecret = h.readSecret(o, 'clientSecret', 'auth.oidc', true);
    if (clientSecret) oidc = { issuer: String(o.issuer).replace(/\/+$/, ''), clientId: o.clientId, clientSecret };
  }

  const tokens: NamedToken[] = [];
  ((auth.tokens ?? []) as Record<string, any>[]).forEach((t, i) => {
    const path = `auth.tokens[${i}]`;
    if (t.name === 'admin') h.issues.push({ path: `${path}.name`, message: '"admin" names the admin token; choose another name' });
    if (tokens.some((x) => x.name === t.name)) h.issues.push({ path: `${path}.name`, message: `duplicate token name "${t.name}"` });
    const token = h.readSecret(t, 'token', path, true);
    if (!token) return;
    if (token.reveal().length < MIN_TOKEN_LENGTH) h.issues.push({ path: `${path}.token`, message: `must be at least ${MIN_TOKEN_LENGTH} characters` });
    const same = tokens.find((x) => x.token.reveal() === token.reveal()) ?? (adminToken?.reveal() === token.reveal() ? { name: 'admin' } : undefined);
    if (same) h.issues.push({ path: `${path}.token`, message: `is the same token as "${same.name}"` });
    tokens.push({ name: t.name, role: t.role, token });
  });

  const users: Record<string, Role> = { ...((auth.users ?? {}) as Record<string, Role>) };
  if (!adminToken && !github && !oidc && tokens.length === 0 && h.issues.length === 0) {
    h.issues.push({ path: 'auth.adminToken', message: 'is required (or adminTokenFile) unless auth.tokens, auth.github or auth.oidc is configured' });
  }
  return {
    public: auth.public ?? false,
    adminToken,
    github,
    oidc,
    users,
    defaultRole: auth.defaultRole,
    tokens,
    sessionTtlMs: h.duration(auth.sessionTtl, DEFAULT_SESSION_TTL_MS, 'auth.sessionTtl'),
  };
}

/**
 * `trustProxy`: the proxies whose X-Forwarded-For is believed. Default none: the
 * client address is the socket's, so nobody can write a false address into the audit
 * trail by sending a header.
 */
export function resolveTrustProxy(list: string[] | undefined, issues: AuthIssue[]): string[] {
  const out: string[] = [];
  (list ?? []).forEach((entry, i) => {
    const [ip, bits, ...rest] = String(entry).split('/');
    const family = isIP(ip ?? '');
    const max = family === 4 ? 32 : 128;
    const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    if (!family || !okBits || rest.length > 0) {
      issues.push({ path: `trustProxy[${i}]`, message: `"${entry}" is not an IP address or CIDR range (e.g. 127.0.0.1, 10.0.0.0/8)` });
      return;
    }
    out.push(String(entry));
  });
  return out;
}
