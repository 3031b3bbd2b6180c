import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { openDatabase } from '../../src/store/db.ts';
import { SessionStore } from '../../src/store/session-store.ts';
import { Authenticator } from '../../src/web/auth/actor.ts';

const base = (auth: string, extra = '') => `
github: { webhookSecret: whsec }
${auth}
${extra}
pipelines: []
`;

function load(text: string, dir = '/etc/deployer') {
  return parseConfig(text, join(dir, 'deployer.yaml'), {});
}
function issues(text: string, dir?: string) {
  try {
    load(text, dir);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  return [];
}

describe('auth config', () => {
  it('resolves the issue example: GitHub, OIDC, users, default role, named tokens, admin token', () => {
    const dir = mkdtempSync(join(tmpdir(), 'auth-config-'));
    writeFileSync(join(dir, 'gh'), 'gh-secret\n');
    writeFileSync(join(dir, 'oidc'), 'oidc-secret\n');
    writeFileSync(join(dir, 'ci'), 'ci-token-0123456789abcdef\n');
    const c = load(
      base(`auth:
  public: false
  github: { clientId: Iv1.abc, clientSecretFile: gh, allowOrgs: [OCaml], apiUrl: https://api.github.com, webUrl: https://github.com }
  oidc: { issuer: https://id.example.org/, clientId: deployer, clientSecretFile: oidc }
  users: { alice: admin, bob: operator }
  defaultRole: viewer
  tokens:
    - { name: ci, role: operator, tokenFile: ci }
  adminToken: admin-token-0123456789`, 'trustProxy: [127.0.0.1, 10.0.0.0/8, "::1"]'),
      dir,
    );
    expect(c.auth.github).toMatchObject({ clientId: 'Iv1.abc', allowOrgs: ['ocaml'], apiUrl: 'https://api.github.com', webUrl: 'https://github.com' });
    expect(c.auth.github!.clientSecret.reveal()).toBe('gh-secret');
    expect(c.auth.oidc).toMatchObject({ issuer: 'https://id.example.org', clientId: 'deployer' });
    expect(c.auth.users).toEqual({ alice: 'admin', bob: 'operator' });
    expect(c.auth.defaultRole).toBe('viewer');
    expect(c.auth.tokens.map((t) => [t.name, t.role, t.token.reveal()])).toEqual([['ci', 'operator', 'ci-token-0123456789abcdef']]);
    expect(c.trustProxy).toEqual(['127.0.0.1', '10.0.0.0/8', '::1']);
    expect(c.auth.public).toBe(false);
    expect(JSON.stringify(c)).not.toMatch(/gh-secret|oidc-secret|ci-token|admin-token/);
  });

  it('needs some way in: the admin token is required only when nothing else is configured', () => {
    expect(issues(base('auth: {}'))).toEqual([{ path: 'auth.adminToken', message: 'is required (or adminTokenFile) unless auth.tokens, auth.github or auth.oidc is configured' }]);
    expect(issues(base('auth: { tokens: [{ name: ci, role: admin, token: ci-token-0123456789ab }] }'))).toEqual([]);
    expect(load(base('auth: { tokens: [{ name: ci, role: admin, token: ci-token-0123456789ab }] }')).trustProxy).toEqual([]);
  });

  it('names each bad key', () => {
    expect(issues(base('auth: { adminToken: admin-token-0123456789, defaultRole: root }'))).toContainEqual(expect.objectContaining({ path: 'auth.defaultRole' }));
    expect(issues(base('auth: { adminToken: admin-token-0123456789, tokens: [{ name: ci, role: operator, token: short }] }'))).toContainEqual({ path: 'auth.tokens[0].token', message: 'must be at least 16 characters' });
    expect(issues(base('auth: { adminToken: admin-token-0123456789, tokens: [{ name: ci, role: operator, token: admin-token-0123456789 }] }'))).toContainEqual({ path: 'auth.tokens[0].token', message: 'is the same token as "admin"' });
    expect(issues(base('auth: { adminToken: admin-token-0123456789, tokens: [{ name: admin, role: viewer, token: other-token-0123456789 }] }'))).toContainEqual(expect.objectContaining({ path: 'auth.tokens[0].name' }));
    expect(issues(base('auth: { adminToken: admin-token-0123456789, github: { clientId: x } }'))).toContainEqual({ path: 'auth.github.clientSecret', message: 'is required (or clientSecretFile)' });
    expect(issues(base('auth: { adminToken: admin-token-0123456789, oidc: { issuer: "not a url", clientId: x, clientSecret: y } }'))).toContainEqual(expect.objectContaining({ path: 'auth.oidc.issuer' }));
    expect(issues(base('auth: { adminToken: admin-token-0123456789 }', 'trustProxy: [everyone, 10.0.0.0/33]'))).toEqual([
      { path: 'trustProxy[0]', message: '"everyone" is not an IP address or CIDR range (e.g. 127.0.0.1, 10.0.0.0/8)' },
      { path: 'trustProxy[1]', message: '"10.0.0.0/33" is not an IP address or CIDR range (e.g. 127.0.0.1, 10.0.0.0/8)' },
    ]);
    expect(issues(base('auth: { adminToken: admin-token-0123456789, sessionTtl: forever }'))).toContainEqual(expect.objectContaining({ path: 'auth.sessionTtl' }));
  });
});

describe('sessions and roles', () => {
  const config = load(base(`auth:
  adminToken: admin-token-0123456789
  users: { Alice: admin, "bob@example.org": operator }
  tokens: [{ name: ci, role: operator, token: ci-token-0123456789ab }]`));

  it('accepts Bearer in any case, and only configured tokens', () => {
    const a = new Authenticator(config.auth, new SessionStore(openDatabase(':memory:')));
    expect(a.fromAuthorization('Bearer admin-token-0123456789')).toEqual({ name: 'admin', role: 'admin' });
    expect(a.fromAuthorization('bearer ci-token-0123456789ab')).toEqual({ name: 'ci', role: 'operator' });
    expect(a.fromAuthorization('BEARER  ci-token-0123456789ab ')).toEqual({ name: 'ci', role: 'operator' });
    expect(a.fromAuthorization('Basic ci-token-0123456789ab')).toBeUndefined();
    expect(a.fromAuthorization('Bearer ci-token-0123456789a')).toBeUndefined();
    expect(a.fromAuthorization('Bearer')).toBeUndefined();
  });

  it('derives roles case-insensitively from users, else refuses without a default role', () => {
    const a = new Authenticator(config.auth, new SessionStore(openDatabase(':memory:')));
    expect(a.roleFor(['alice'])).toBe('admin');
    expect(a.roleFor(['sub-123', 'BOB@example.org'])).toBe('operator');
    expect(a.roleFor(['mallory'])).toBeUndefined();
  });

  it('keeps only a hash of the session id, expires sessions, and ends a session whose token left the config', () => {
    const db = openDatabase(':memory:');
    const sessions = new SessionStore(db);
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const id = sessions.create({ provider: 'github', login: 'alice', keys: ['alice'], role: 'admin', address: '127.0.0.1', ttlMs: 60_000 }, t0);
    const tokenSession = sessions.create({ provider: 'token', login: 'gone', keys: ['gone'], role: 'operator', address: null, ttlMs: 60_000 }, t0);
    expect(JSON.stringify(db.prepare('SELECT * FROM sessions').all())).not.toContain(id);
    expect(sessions.get(id, t0 + 59_000)?.login).toBe('alice');
    expect(sessions.get(id, t0 + 60_000)).toBeUndefined();
    expect(sessions.get('not-a-session')).toBeUndefined();
    const a = new Authenticator(config.auth, sessions);
    expect(a.fromSession(tokenSession)).toBeUndefined(); // no token "gone" configured
    expect(sessions.pruneExpired(t0 + 61_000)).toBe(2);
  });
});
