import { createSign, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubStandIn, type GitHubStandIn } from '../support/github-api.ts';

/** The stand-in must be able to fail a test: it is only worth its checks. */
describe('GitHub stand-in validates against the published OpenAPI description', () => {
  let gh: GitHubStandIn;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const headers = { authorization: 'token ghp_test', 'user-agent': 'test', 'content-type': 'application/json' };
  const post = (path: string, body: unknown, h: Record<string, string> = headers) => fetch(`${gh.url}${path}`, { method: 'POST', headers: h, body: JSON.stringify(body) });

  beforeAll(async () => {
    gh = await startGitHubStandIn({ token: 'ghp_test', app: { id: 9, publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(), installations: { 'o/r': 5 } } });
  });
  afterAll(() => gh?.close());

  it('accepts a valid request and records it', async () => {
    const res = await post('/repos/o/r/deployments', { ref: 'a'.repeat(40), environment: 'production', auto_merge: false, required_contexts: [] });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: number };
    expect((await post(`/repos/o/r/deployments/${id}/statuses`, { state: 'in_progress', log_url: 'https://x/runs/1' })).status).toBe(201);
    expect(gh.statusSequences()).toEqual([{ ref: 'a'.repeat(40), states: ['in_progress'] }]);
    expect(gh.violations).toEqual([]);
  });

  it('an unknown route, a missing required field, a wrong enum value, a wrong type are violations', async () => {
    expect((await post('/repos/o/r/deployment', { ref: 'x' })).status).toBe(404);
    expect((await post('/repos/o/r/check-runs', { head_sha: 'a' })).status).toBe(422);
    expect((await post('/repos/o/r/deployments/1000/statuses', { state: 'done' })).status).toBe(422);
    expect((await post('/repos/o/r/deployments', { ref: 'x', auto_merge: 'no' })).status).toBe(422);
    expect((await post('/repos/o/r/deployments/1000/statuses', { state: 'success', description: 'x'.repeat(141) })).status).toBe(422);
    expect(gh.violations).toHaveLength(5);
    expect(gh.violations.join('\n')).toMatch(/no such route/);
    expect(gh.violations.join('\n')).toMatch(/must have required property 'name'/);
    expect(gh.violations.join('\n')).toMatch(/must be equal to one of the allowed values/);
    expect(gh.violations.join('\n')).toMatch(/auto_merge must be boolean/);
    gh.violations.length = 0;
  });

  it('App auth: only a JWT signed with the App key gets an installation token; only that token may write check runs', async () => {
    const jwt = (key = privateKey, iss = 9) => {
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      const data = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc({ iat: now - 30, exp: now + 540, iss })}`;
      return `${data}.${createSign('RSA-SHA256').update(data).sign(key, 'base64url')}`;
    };
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const asApp = (t: string) => ({ ...headers, authorization: `Bearer ${t}` });
    expect((await fetch(`${gh.url}/repos/o/r/installation`, { headers: asApp(jwt(other)) })).status).toBe(401);
    expect((await fetch(`${gh.url}/repos/o/r/installation`, { headers: asApp(jwt()) })).status).toBe(200);
    const tok = await post('/app/installations/5/access_tokens', {}, asApp(jwt()));
    expect(tok.status).toBe(201);
    const { token } = (await tok.json()) as { token: string };
    expect((await post('/repos/o/r/check-runs', { name: 'deployer/www', head_sha: 'a'.repeat(40) })).status).toBe(403); // a PAT cannot
    expect((await post('/repos/o/r/check-runs', { name: 'deployer/www', head_sha: 'a'.repeat(40) }, { ...headers, authorization: `token ${token}` })).status).toBe(201);
    expect((await post('/repos/o/r/deployments', { ref: 'x' }, { ...headers, authorization: 'token wrong' })).status).toBe(401);
    expect(gh.violations).toEqual([]);
  });
});
