// A local server speaking GitHub's OAuth app endpoints (as documented: /login/oauth/
// authorize and /login/oauth/access_token, with PKCE) and the two REST calls sign-in
// makes, GET /user and GET /user/orgs. Each REST request is checked against GitHub's
// published OpenAPI description (@octokit/openapi: the path and method exist, every
// query parameter is declared, the media type and API version are ones GitHub serves)
// and answered with that description's own example, with the login and organisations
// the test chose. Every request is recorded; anything off is recorded as a violation.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';

type Spec = { info: Record<string, unknown>; paths: Record<string, Record<string, any>>; components: Record<string, Record<string, any>> };
let spec: Spec | undefined;
function loadSpec(): Spec {
  const file = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.json');
  spec ??= JSON.parse(readFileSync(file, 'utf8')) as Spec;
  return spec;
}
function deref(node: any): any {
  const s = loadSpec();
  while (node && typeof node === 'object' && typeof node.$ref === 'string') {
    const [, , kind, name] = node.$ref.split('/');
    node = s.components[kind]![name];
  }
  return node;
}

export interface GithubUser {
  login: string;
  orgs: string[];
}

export interface FakeGithub {
  /** webUrl for the config. */
  webUrl: string;
  /** apiUrl for the config (GitHub Enterprise style: /api/v3). */
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  /** Who is signed in to "GitHub" in the browser; authorize approves at once, as GitHub does for an app already authorized. */
  user: GithubUser;
  requests: { method: string; path: string; query: Record<string, string> }[];
  violations: string[];
  stop(): Promise<void>;
}

export async function startFakeGithub(): Promise<FakeGithub> {
  const s = loadSpec();
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const codes = new Map<string, { user: GithubUser; redirectUri: string; challenge: string; scope: string }>();
  const tokens = new Map<string, { user: GithubUser; scope: string }>();
  const gh: FakeGithub = {
    webUrl: base,
    apiUrl: `${base}/api/v3`,
    clientId: 'Iv1.testclient',
    clientSecret: `gh-secret-${randomBytes(6).toString('hex')}`,
    user: { login: 'octocat', orgs: [] },
    requests: [],
    violations: [],
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const body = (req: IncomingMessage) => new Promise<string>((resolve) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.on('end', () => resolve(b));
  });
  const json = (res: import('node:http').ServerResponse, status: number, value: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(value));
  };

  server.on('request', async (req, res) => {
    const u = new URL(req.url!, base);
    const query = Object.fromEntries(u.searchParams);
    gh.requests.push({ method: req.method!, path: u.pathname, query });
    const bad = (why: string) => gh.violations.push(`${req.method} ${u.pathname}: ${why}`);

    if (req.method === 'GET' && u.pathname === '/login/oauth/authorize') {
      // https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#1-request-a-users-github-identity
      if (query.client_id !== gh.clientId) bad('unknown client_id');
      if (!query.redirect_uri?.startsWith('http')) bad('redirect_uri missing');
      if (!query.state) bad('no state');
      if (query.code_challenge_method !== 'S256' || !query.code_challenge) bad('no S256 PKCE challenge');
      for (const k of Object.keys(query)) if (!['client_id', 'redirect_uri', 'login', 'scope', 'state', 'allow_signup', 'prompt', 'code_challenge', 'code_challenge_method', 'response_type'].includes(k)) bad(`undocumented parameter ${k}`);
      const code = randomBytes(10).toString('hex');
      codes.set(code, { user: gh.user, redirectUri: query.redirect_uri!, challenge: query.code_challenge!, scope: query.scope ?? '' });
      const back = new URL(query.redirect_uri!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', query.state!);
      res.writeHead(302, { location: back.href });
      return res.end();
    }

    if (req.method === 'POST' && u.pathname === '/login/oauth/access_token') {
      // https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#2-users-are-redirected-back-to-your-site-by-github
      const p = Object.fromEntries(new URLSearchParams(await body(req)));
      const grant = codes.get(p.code ?? '');
      codes.delete(p.code ?? '');
      if (p.client_id !== gh.clientId || p.client_secret !== gh.clientSecret) {
        bad('wrong client credentials');
        return json(res, 200, { error: 'incorrect_client_credentials' });
      }
      if (!grant) return json(res, 200, { error: 'bad_verification_code' });
      if (p.redirect_uri !== undefined && p.redirect_uri !== grant.redirectUri) bad('redirect_uri differs from the authorize request');
      const challenge = createHash('sha256').update(p.code_verifier ?? '').digest('base64url');
      if (challenge !== grant.challenge) {
        bad('PKCE verifier does not match');
        return json(res, 200, { error: 'bad_verification_code' });
      }
      if (!(req.headers.accept ?? '').includes('application/json')) bad('no Accept: application/json (GitHub would answer form-encoded)');
      const token = `gho_${randomBytes(16).toString('hex')}`;
      tokens.set(token, { user: grant.user, scope: grant.scope });
      return json(res, 200, { access_token: token, token_type: 'bearer', scope: grant.scope });
    }

    if (u.pathname.startsWith('/api/v3/')) {
      const path = u.pathname.slice('/api/v3'.length);
      const op = s.paths[path]?.[req.method!.toLowerCase()];
      if (!op) {
        bad('not an operation in GitHub\'s OpenAPI description');
        return json(res, 404, { message: 'Not Found' });
      }
      const declared = (op.parameters ?? []).map(deref).filter((x: any) => x.in === 'query').map((x: any) => x.name);
      for (const k of Object.keys(query)) if (!declared.includes(k)) bad(`query parameter ${k} is not declared`);
      const accept = req.headers.accept ?? '';
      if (accept && !/application\/(vnd\.github(\.v3)?(\+json)?|json)|\*\/\*/.test(accept)) bad(`unexpected Accept ${accept}`);
      const versions = (s.info['x-github-api-versions'] ?? ['2022-11-28']) as string[];
      const version = req.headers['x-github-api-version'];
      if (version !== undefined && !versions.includes(String(version))) bad(`unknown API version ${version}`);
      const auth = /^(?:bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '');
      const who = auth ? tokens.get(auth[1]!) : undefined;
      if (!who) return json(res, 401, { message: 'Requires authentication' });
      const example = (status: string) => {
        const content = deref(op.responses[status]).content['application/json'];
        return structuredClone(deref(Object.values(content.examples)[0]).value);
      };
      if (path === '/user') return json(res, 200, { ...example('200'), login: who.user.login });
      if (path === '/user/orgs') {
        // Private memberships are listed only with the read:org scope.
        const [template] = example('200');
        return json(res, 200, who.scope.split(/[ ,]/).includes('read:org') ? who.user.orgs.map((login, id) => ({ ...template, login, id })) : []);
      }
      bad('operation not expected during sign-in');
      return json(res, 404, { message: 'Not Found' });
    }
    bad('unknown endpoint');
    res.writeHead(404);
    res.end();
  });
  return gh;
}
