import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { disposeQueues } from '../helpers/world.ts';
import { readStore, rowCount } from '../helpers/db.ts';

/**
 * Access control over real HTTP on a real daemon (real Redis and SQLite; no worker):
 * nothing answers anonymously but /healthz, the webhook and sign-in; roles; CSRF on
 * cookie sessions; the audit trail; token sign-in and sign-out; trusted proxies;
 * per-client limits on live views; the sign-in rate limit.
 */
const VIEWER = 'viewer-token-0123456789';
const OPS = 'ops-token-0123456789abc';
const OTHER_OPS = 'other-ops-token-0123456789';
const ADMIN2 = 'root-token-0123456789abc';

const tokensYaml = `  tokens:
    - { name: watcher, role: viewer, token: ${VIEWER} }
    - { name: ops, role: operator, token: ${OPS} }
    - { name: ops2, role: operator, token: ${OTHER_OPS} }
    - { name: root, role: admin, token: ${ADMIN2} }
`;

/** A browser's cookie jar, reduced to what these tests need. */
class Jar {
  readonly cookies = new Map<string, string>();
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i);
      const value = pair!.slice(i + 1);
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  get header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('access: sign-in, roles, CSRF and the audit trail', () => {
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let runId: string;
  let xff = 0;
  /** A distinct client address per sign-in (through the trusted proxy), so the sign-in rate limit stays out of the way. */
  const nextAddress = () => `198.51.100.${++xff}`;

  const signIn = async (token: string, jar = new Jar()) => {
    const res = await fetch(`${url}/auth/token`, { method: 'POST', headers: { ...FORM, 'x-forwarded-for': nextAddress() }, body: form({ token }), redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    jar.take(res);
    expect(jar.cookies.has('deployer_session')).toBe(true);
    return jar;
  };
  /** The page's CSRF token, as a browser would submit it from any form on the page. */
  const csrfOf = async (jar: Jar, path = '/') => {
    const res = await fetch(`${url}${path}`, { headers: { cookie: jar.header, accept: 'text/html' } });
    expect(res.status).toBe(200);
    jar.take(res);
    const m = /name="_csrf" value="([^"]+)"/.exec(await res.text());
    expect(m).not.toBeNull();
    return m![1]!;
  };
  const runCount = () => rowCount(config, 'runs');

  beforeAll(async () => {
    config = testConfig({
      pipelines: [{ name: 'site', repo: 'acme/access', image: '127.0.0.1:5999/access', services: [] }],
      authYaml: tokensYaml,
      extraYaml: 'trustProxy: [127.0.0.1]\n',
    });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0, live: { maxPerActor: 2, maxPerAddress: 3 } });
    url = daemon.url!;
    const res = await deliver(url, pushPayload('acme/access', 'main', 'a'.repeat(40), 'subject-xyzzy'));
    runId = res.body.runs[0];
  });

  afterAll(async () => {
    await daemon?.close();
    await disposeQueues(config);
  });

  it('refuses every route to anonymous requests, except /healthz, the webhook and signing in', async () => {
    const routes = daemon.app!.routeList; // HEAD routes included
    const open = new Set(['/healthz', '/webhooks/github', '/signin', '/assets/:file', '/auth/token', '/auth/logout']);
    const fill = (u: string) => u.replace(':name', 'site').replace(':id', runId).replace(':file', 'app.css');
    const before = runCount();
    const checked: string[] = [];
    for (const r of routes) {
      if (open.has(r.url)) continue;
      for (const accept of ['application/json', 'text/html']) {
        const res = await fetch(`${url}${fill(r.url)}`, { method: r.method, headers: { accept }, signal: AbortSignal.timeout(5000) });
        expect(res.status, `${r.method} ${r.url} (${accept})`).toBe(401);
        const body = await res.text();
        // A page asked for by a browser gets the sign-in form; nothing of the run or pipeline leaks.
        if (accept === 'text/html' && r.method === 'GET') expect(body).toContain('action="/auth/token"');
        expect(body).not.toContain('subject-xyzzy');
      }
      checked.push(`${r.method} ${r.url}`);
    }
    // The console's routes are all there (a route renamed or added is checked too).
    expect(checked).toEqual(expect.arrayContaining(['GET /', 'GET /pipelines/:name', 'GET /runs/:id', 'GET /runs', 'GET /audit', 'GET /api/audit', 'GET /api/events', 'GET /api/runs/:id/events', 'GET /api/runs/:id/log', 'POST /api/pipelines/:name/rebuild', 'POST /api/pipelines/:name/rollback', 'POST /api/pipelines/:name/pause', 'POST /api/pipelines/:name/resume', 'POST /api/pipelines/:name/refresh', 'POST /api/runs/:id/cancel', 'POST /api/runs/:id/start']));
    expect(checked.length).toBeGreaterThanOrEqual(20);
    expect(runCount()).toBe(before);
    expect(daemon.store!.pauseOf('site')).toBeUndefined();
    // These still answer.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await deliver(url, pushPayload('acme/access', 'main', 'b'.repeat(40), 'second'))).status).toBe(202);
    expect((await fetch(`${url}/signin`)).status).toBe(200);
    expect((await fetch(`${url}/assets/app.css`)).status).toBe(200);
    // A wrong token is refused even where the route would be open to it.
    expect((await fetch(`${url}/api/pipelines`, { headers: bearer('not-a-configured-token') })).status).toBe(401);
  });

  it('gives each role what it may do: 403 without the role, and nothing changes', async () => {
    const before = runCount();
    const post = (path: string, token: string, body?: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { ...bearer(token), ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
    expect((await fetch(`${url}/api/pipelines`, { headers: bearer(VIEWER) })).status).toBe(200);
    expect((await post('/api/pipelines/site/rebuild', VIEWER)).status).toBe(403);
    expect((await post(`/api/runs/${runId}/cancel`, VIEWER)).status).toBe(403);
    expect((await post('/api/pipelines/site/pause', OPS, { reason: 'x' })).status).toBe(403);
    expect((await post('/api/pipelines/site/rollback', OPS, {})).status).toBe(403);
    expect(runCount()).toBe(before);
    expect(daemon.store!.pauseOf('site')).toBeUndefined();

    // `Bearer` in any case (RFC 7235).
    const rebuild = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { authorization: `bearer ${OPS}` } });
    expect(rebuild.status).toBe(202);
    const { run } = await rebuild.json();
    // The run says who asked for it.
    expect(daemon.store!.getRun(run)).toMatchObject({ trigger: 'rebuild', requestedBy: 'ops' });
    expect((await post('/api/pipelines/site/pause', ADMIN2, { reason: 'freeze' })).status).toBe(200);
    expect(daemon.store!.pauseOf('site')).toMatchObject({ reason: 'freeze', by: 'root' });
    expect((await post('/api/pipelines/site/resume', ADMIN2)).status).toBe(200);

    const audit = (await (await fetch(`${url}/api/audit?limit=200`, AUTH)).json()).entries as any[];
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'watcher', role: 'viewer', via: 'token', action: 'rebuild', target: 'site', result: 'refused' }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'ops', role: 'operator', action: 'pause', result: 'refused' }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'ops', role: 'operator', via: 'token', action: 'rebuild', target: 'site', result: 'ok', detail: `run ${run}`, address: '127.0.0.1' }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'root', action: 'pause', target: 'site', result: 'ok', detail: 'freeze' }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'root', action: 'resume', result: 'ok' }));
    // Token use is recorded too (once per token and address, then hourly).
    expect(audit.filter((e) => e.action === 'token-use' && e.actor === 'watcher')).toHaveLength(1);
    // The refused unknown token of the first test is there, without the token.
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'anonymous', action: 'sign-in', result: 'refused' }));
    expect(JSON.stringify(audit)).not.toMatch(/token-0123456789/);
    // Filters.
    const refused = (await (await fetch(`${url}/api/audit?result=refused&actor=ops`, AUTH)).json()).entries as any[];
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((e) => e.result === 'refused' && e.actor === 'ops')).toBe(true);
  });

  it('signs a browser in with a token: session cookie, CSRF on every write, sign-out', async () => {
    const jar = await signIn(OPS);
    const sessionCookie = (await fetch(`${url}/auth/token`, { method: 'POST', headers: FORM, body: form({ token: OPS }), redirect: 'manual' })).headers.getSetCookie().find((c) => c.startsWith('deployer_session='))!;
    expect(sessionCookie).toMatch(/HttpOnly/i);
    expect(sessionCookie).toMatch(/SameSite=Lax/i);
    expect(sessionCookie).not.toMatch(/Secure/i); // publicUrl is http:// here
    // The cookie in the database is not the cookie: only its hash is stored.
    const stored = JSON.stringify(readStore(config, (db) => db.prepare('SELECT * FROM sessions').all()));
    expect(stored).not.toContain(jar.cookies.get('deployer_session')!.split('.')[0]);

    const home = await fetch(`${url}/`, { headers: { cookie: jar.header } });
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('action="/api/pipelines/site/rebuild"');

    // A cookie without the CSRF token changes nothing: 403.
    const before = runCount();
    const forged = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header, ...FORM }, body: '', redirect: 'manual' });
    expect(forged.status).toBe(403);
    const forgedJson = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header } });
    expect(forgedJson.status).toBe(403);
    expect(runCount()).toBe(before);

    // A token from another session is refused too.
    const otherJar = await signIn(OTHER_OPS);
    const otherCsrf = await csrfOf(otherJar);
    expect((await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header, ...FORM }, body: form({ _csrf: otherCsrf }), redirect: 'manual' })).status).toBe(403);
    expect(runCount()).toBe(before);

    // With its own token the form works: 303 to the new run's page; the API takes the header.
    const csrf = await csrfOf(jar);
    const ok = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header, ...FORM }, body: form({ _csrf: csrf }), redirect: 'manual' });
    expect(ok.status).toBe(303);
    const location = ok.headers.get('location')!;
    expect(location).toMatch(/^\/runs\/r[a-z0-9]+$/);
    expect(daemon.store!.getRun(location.split('/').pop()!)).toMatchObject({ trigger: 'rebuild', requestedBy: 'ops' });
    const viaApi = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header, 'x-csrf-token': csrf } });
    expect(viaApi.status).toBe(202);
    expect(runCount()).toBe(before + 2);

    const audit = (await (await fetch(`${url}/api/audit?action=rebuild&actor=ops`, AUTH)).json()).entries as any[];
    expect(audit[0]).toMatchObject({ via: 'session:token', result: 'ok', address: '127.0.0.1' });
    expect(audit.some((e) => e.via === 'session:token' && e.result === 'refused')).toBe(true);

    // Sign-out ends the session: the same cookie is refused afterwards.
    const out = await fetch(`${url}/auth/logout`, { method: 'POST', headers: { cookie: jar.header, ...FORM }, body: form({ _csrf: csrf }), redirect: 'manual' });
    expect(out.status).toBe(303);
    expect((await fetch(`${url}/api/pipelines`, { headers: { cookie: jar.header } })).status).toBe(401);
    // A page from another site cannot sign anyone in or out.
    expect((await fetch(`${url}/auth/token`, { method: 'POST', headers: { ...FORM, origin: 'https://evil.example' }, body: form({ token: OPS }), redirect: 'manual' })).status).toBe(403);
    const signIns = (await (await fetch(`${url}/api/audit?action=sign-in&actor=ops`, AUTH)).json()).entries as any[];
    expect(signIns[0]).toMatchObject({ result: 'ok', via: 'session:token', role: 'operator' });
    expect(signIns.some((e) => String(e.address).startsWith('198.51.100.'))).toBe(true); // the trusted proxy's X-Forwarded-For
    expect((await (await fetch(`${url}/api/audit?action=sign-out`, AUTH)).json()).entries[0]).toMatchObject({ actor: 'ops', result: 'ok' });
  });

  it('shows a viewer no action buttons, and refuses a viewer session forged POST with a valid CSRF token', async () => {
    const jar = await signIn(VIEWER);
    const pages = ['/', '/pipelines/site', `/runs/${runId}`];
    for (const p of pages) {
      const html = await (await fetch(`${url}${p}`, { headers: { cookie: jar.header } })).text();
      expect(html, p).not.toMatch(/action="\/api\//);
      expect(html, p).not.toMatch(/Rebuild|Cancel|Roll back|Pause/);
    }
    const csrf = await csrfOf(jar);
    const before = runCount();
    const res = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { cookie: jar.header, ...FORM }, body: form({ _csrf: csrf }), redirect: 'manual' });
    expect(res.status).toBe(403);
    expect(runCount()).toBe(before);
  });

  it('sends a strict CSP with a nonce on every script, and no inline script at all', async () => {
    for (const p of ['/', '/pipelines/site', `/runs/${runId}`, '/runs', '/audit', '/signin']) {
      const res = await fetch(`${url}${p}`, AUTH);
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toMatch(/default-src 'none'/);
      const nonce = /script-src 'self' 'nonce-([a-f0-9]+)'/.exec(csp)?.[1];
      expect(nonce, p).toBeTruthy();
      expect(csp).toMatch(/frame-ancestors 'none'/);
      const html = await res.text();
      const scripts = html.match(/<script\b[^>]*>/g) ?? [];
      expect(scripts.length).toBeGreaterThan(0);
      for (const s of scripts) {
        expect(s).toContain(`nonce="${nonce}"`);
        expect(s).toMatch(/ src="\/assets\//);
      }
      expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
      expect(res.headers.get('x-frame-options')).toBe('DENY');
    }
    // The whole client (script + style) stays small.
    let bytes = 0;
    for (const f of ['app.js', 'ansi.js', 'log-model.js', 'ansi_up.js', 'app.css']) bytes += (await (await fetch(`${url}/assets/${f}`)).arrayBuffer()).byteLength;
    expect(bytes).toBeLessThan(50 * 1024);
  });

  it('limits live views per token and per address', async () => {
    const streams: AbortController[] = [];
    const open = async (token: string) => {
      const abort = new AbortController();
      streams.push(abort);
      const res = await fetch(`${url}/api/events`, { headers: bearer(token), signal: abort.signal });
      if (res.status !== 200) await res.text();
      return res.status;
    };
    try {
      expect(await open(OPS)).toBe(200);
      expect(await open(OPS)).toBe(200);
      expect(await open(OPS)).toBe(503); // 2 per token
      expect(await open(OTHER_OPS)).toBe(200); // another token, same address: 3 in all
      expect(await open(ADMIN2)).toBe(503); // 3 per address
    } finally {
      for (const s of streams) s.abort();
    }
  });

  it('rate-limits signing in', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${url}/auth/token`, { method: 'POST', headers: { ...FORM, 'x-forwarded-for': '203.0.113.50' }, body: form({ token: `guess-${i}-0123456789` }), redirect: 'manual' });
      statuses.push(res.status);
      await res.text();
    }
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(10)).toEqual([429, 429]);
  });
});

describe('access: auth.public true', () => {
  let config: Config;
  let daemon: Daemon;

  beforeAll(async () => {
    config = testConfig({ pipelines: [{ name: 'site', repo: 'acme/public', image: '127.0.0.1:5999/public', services: [] }], authYaml: '  public: true\n' });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0, live: { maxPerAnonymousAddress: 2 } });
  });
  afterAll(async () => {
    await daemon?.close();
    await disposeQueues(config);
  });

  it('lets anyone read, but every write needs a sign-in (401), and X-Forwarded-For from an untrusted peer is ignored', async () => {
    const url = daemon.url!;
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('href="/signin"');
    expect((await fetch(`${url}/api/pipelines`)).status).toBe(200);
    expect((await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${url}/api/pipelines/site/pause`, { method: 'POST' })).status).toBe(401);
    expect(daemon.store!.lastRun('site')).toBeUndefined();

    await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { ...AUTH.headers as Record<string, string>, 'x-forwarded-for': '203.0.113.9' } });
    const [entry] = (await (await fetch(`${url}/api/audit?action=rebuild`)).json()).entries;
    expect(entry).toMatchObject({ actor: 'admin', address: '127.0.0.1' });
  });

  it('limits anonymous live views per address', async () => {
    const aborts: AbortController[] = [];
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const a = new AbortController();
        aborts.push(a);
        const res = await fetch(`${daemon.url}/api/events`, { signal: a.signal });
        statuses.push(res.status);
        if (res.status !== 200) await res.text();
      }
      // A signed-in client at the same address is not held back by the anonymous ones.
      const a = new AbortController();
      aborts.push(a);
      statuses.push((await fetch(`${daemon.url}/api/events`, { ...AUTH, signal: a.signal })).status);
    } finally {
      for (const a of aborts) a.abort();
    }
    expect(statuses).toEqual([200, 200, 503, 200]);
  });
});
