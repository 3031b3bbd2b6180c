// A local HTTP server standing in for api.github.com. Every request is checked against
// GitHub's published OpenAPI description (npm @octokit/openapi): the route must exist,
// path and query parameters and the JSON body must match the operation's schemas
// (required fields, enums, types, formats), validated with ajv. Anything else is
// answered like GitHub would (404/422) AND recorded as a violation, which the tests
// assert empty. It implements the endpoints the deployer uses, with GitHub's auth rules
// (a token; a GitHub App's RS256 JWT for /app/… and …/installation; installation tokens).
import { createPublicKey, createVerify, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

interface Operation {
  method: string;
  template: string;
  regex: RegExp;
  names: string[];
  operationId: string;
  op: Record<string, any>;
  literalLength: number;
}

let specCache: { spec: Record<string, any>; ops: Operation[]; ajv: Ajv } | undefined;

/** GitHub's REST description for api.github.com (13 MB; parsed once per process). */
function loadSpec() {
  if (specCache) return specCache;
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('@octokit/openapi/package.json'));
  const spec = JSON.parse(readFileSync(join(dir, 'generated', 'api.github.com.json'), 'utf8')) as Record<string, any>;
  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, discriminator: true });
  addFormats(ajv);
  ajv.addSchema(spec, 'gh');
  const ops: Operation[] = [];
  for (const [template, item] of Object.entries(spec.paths as Record<string, Record<string, any>>)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      const op = item[method];
      if (!op) continue;
      const names: string[] = [];
      const multi = new Set(((op.parameters ?? []) as any[]).map((p) => resolveRef(spec, p)).filter((p) => p['x-multi-segment']).map((p) => p.name));
      const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, name: string) => {
        names.push(name);
        return multi.has(name) ? '(.+)' : '([^/]+)';
      });
      ops.push({ method: method.toUpperCase(), template, regex: new RegExp(`^${pattern}$`), names, operationId: op.operationId, op, literalLength: template.replace(/\{[^}]+\}/g, '').length });
    }
  }
  // The most literal template wins (/repos/{o}/{r}/installation over /repos/{o}/{r}/{x}).
  ops.sort((a, b) => b.literalLength - a.literalLength);
  specCache = { spec, ops, ajv };
  return specCache;
}

function resolveRef(spec: Record<string, any>, node: any): any {
  if (node && typeof node.$ref === 'string' && node.$ref.startsWith('#/')) {
    return node.$ref.slice(2).split('/').reduce((o: any, k: string) => o?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return node;
}

const validators = new Map<string, ValidateFunction>();
function validatorFor(pointer: string): ValidateFunction {
  let v = validators.get(pointer);
  if (!v) {
    v = loadSpec().ajv.compile({ $ref: `gh#${pointer}` });
    validators.set(pointer, v);
  }
  return v;
}

const pointerPart = (s: string) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'));

export interface RecordedRequest {
  at: number;
  method: string;
  path: string;
  operationId: string | undefined;
  params: Record<string, string>;
  body: any;
  /** How it authenticated: 'token', 'installation', 'jwt' or 'none' (never the secret). */
  auth: string;
  status: number;
}

export interface DeploymentRecord {
  id: number;
  repo: string;
  ref: string;
  environment: string;
  description: string | null;
  payload: unknown;
  statuses: { state: string; description: string; log_url?: string; environment_url?: string; at: number }[];
}

export interface CheckRunRecord {
  id: number;
  repo: string;
  name: string;
  head_sha: string;
  external_id?: string;
  details_url?: string;
  /** The create body, then each update's body. */
  updates: Record<string, any>[];
  /** The check's current fields (create merged with every update). */
  current: Record<string, any>;
}

export interface StandInOptions {
  /** A personal access token accepted as `token X` / `Bearer X`. */
  token?: string;
  /** A GitHub App: its id, public key (to verify JWTs) and installations per repository. */
  app?: { id: number; publicKey: string | KeyObject; installations: Record<string, number> };
}

export interface GitHubStandIn {
  url: string;
  requests: RecordedRequest[];
  /** Requests that broke the spec or GitHub's rules: tests assert this stays empty. */
  violations: string[];
  deployments: DeploymentRecord[];
  checkRuns: CheckRunRecord[];
  commitStatuses: { repo: string; sha: string; state: string; context: string; description?: string; target_url?: string; at: number }[];
  /** Installation tokens handed out (to check they never leak). */
  issuedTokens: string[];
  /** Answers every request with `status` (e.g. 502) for `ms`, as GitHub in an outage. */
  outage(ms: number, status?: number): void;
  /** Revokes every credential: each request now gets 401 Bad credentials. */
  revokeCredentials(revoked: boolean): void;
  /** Deployment state sequences, in creation order, for one environment. */
  statusSequences(environment?: string): { ref: string; states: string[] }[];
  close(): Promise<void>;
}

export async function startGitHubStandIn(opts: StandInOptions): Promise<GitHubStandIn> {
  const { spec, ops } = loadSpec();
  const requests: RecordedRequest[] = [];
  const violations: string[] = [];
  const deployments: DeploymentRecord[] = [];
  const checkRuns: CheckRunRecord[] = [];
  const commitStatuses: GitHubStandIn['commitStatuses'] = [];
  const issued = new Map<string, { installation: number; expires: number }>();
  let outageUntil = 0;
  let outageStatus = 502;
  let revoked = false;
  let nextId = 1000;
  const publicKey = opts.app ? (typeof opts.app.publicKey === 'string' ? createPublicKey(opts.app.publicKey) : opts.app.publicKey) : undefined;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        violations.push(`stand-in error: ${(err as Error).message}`);
        send(res, 500, { message: 'stand-in error' });
      }
    });
  });

  function send(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-github-media-type': 'github.v3; format=json', 'x-ratelimit-remaining': '4999', 'x-ratelimit-limit': '5000' });
    res.end(JSON.stringify(body));
  }

  function handle(req: IncomingMessage, res: ServerResponse, text: string): void {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? 'GET';
    const record: RecordedRequest = { at: Date.now(), method, path: url.pathname, operationId: undefined, params: {}, body: undefined, auth: 'none', status: 0 };
    requests.push(record);
    const reply = (status: number, body: unknown) => {
      record.status = status;
      send(res, status, body);
    };
    const violation = (status: number, message: string) => {
      violations.push(`${method} ${url.pathname}: ${message}`);
      reply(status, { message, documentation_url: 'https://docs.github.com/rest' });
    };

    // 1. The route must be in GitHub's description.
    const match = ops.find((o) => o.method === method && o.regex.test(url.pathname));
    if (!match) return violation(404, 'Not Found (no such route in the OpenAPI description)');
    record.operationId = match.operationId;
    const values = match.regex.exec(url.pathname)!.slice(1).map(decodeURIComponent);
    const params: Record<string, string> = {};
    match.names.forEach((n, i) => (params[n] = values[i]!));
    record.params = params;

    // 2. Headers GitHub requires.
    if (!req.headers['user-agent']) return violation(403, 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header');

    // 3. Path and query parameters against their schemas.
    for (const raw of (match.op.parameters ?? []) as any[]) {
      const p = resolveRef(spec, raw);
      if (p.in !== 'path' && p.in !== 'query') continue;
      const value = p.in === 'path' ? params[p.name] : (url.searchParams.get(p.name) ?? undefined);
      if (value === undefined) {
        if (p.required) return violation(422, `missing required ${p.in} parameter ${p.name}`);
        continue;
      }
      const schema = p.schema ?? {};
      const coerced = schema.type === 'integer' || schema.type === 'number' ? Number(value) : schema.type === 'boolean' ? value === 'true' : value;
      const pointer = raw.$ref ? `${raw.$ref.slice(1)}/schema` : `/paths/${pointerPart(match.template)}/${method.toLowerCase()}/parameters/${(match.op.parameters as any[]).indexOf(raw)}/schema`;
      const v = validatorFor(pointer);
      if (!v(coerced)) return violation(422, `${p.in} parameter ${p.name}=${value}: ${ajvText(v)}`);
    }

    // 4. The JSON body against the operation's request body schema.
    let body: any;
    if (text.length > 0) {
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) return violation(415, `body sent as ${req.headers['content-type']}, not application/json`);
      try {
        body = JSON.parse(text);
      } catch {
        return violation(400, 'Problems parsing JSON');
      }
    }
    record.body = body;
    const rb = match.op.requestBody;
    if (rb) {
      if (body === undefined && rb.required) return violation(422, 'request body required');
      if (body !== undefined && rb.content?.['application/json']) {
        const v = validatorFor(`/paths/${pointerPart(match.template)}/${method.toLowerCase()}/requestBody/content/application~1json/schema`);
        if (!v(body)) return violation(422, `Invalid request: ${ajvText(v)}`);
      }
    } else if (body !== undefined && Object.keys(body).length > 0) {
      return violation(422, 'this operation takes no body');
    }

    // 5. An outage answers everything alike (after the request was checked and recorded).
    if (Date.now() < outageUntil) return reply(outageStatus, { message: 'Server Error' });

    // 6. Authentication, as GitHub does it.
    const auth = String(req.headers.authorization ?? '');
    const appRoute = match.template.startsWith('/app/') || match.template === '/repos/{owner}/{repo}/installation';
    if (appRoute) {
      const claims = publicKey ? verifyJwt(auth, publicKey) : undefined;
      if (!claims || revoked) return reply(401, { message: 'A JSON web token could not be decoded' });
      if (String(claims.iss) !== String(opts.app!.id)) return reply(401, { message: "'Issuer' claim ('iss') must be an Integer" });
      record.auth = 'jwt';
    } else {
      const given = /^(?:token|bearer)\s+(.+)$/i.exec(auth)?.[1];
      const inst = given ? issued.get(given) : undefined;
      if (revoked || !given || (given !== opts.token && (!inst || inst.expires < Date.now()))) return reply(401, { message: 'Bad credentials' });
      record.auth = inst ? 'installation' : 'token';
      // Check runs can only be written by GitHub Apps.
      if (match.template.includes('/check-runs') && !inst) return reply(403, { message: 'You must authenticate via a GitHub App.' });
    }

    const repo = `${params.owner}/${params.repo}`;
    switch (match.operationId) {
      case 'apps/get-repo-installation': {
        const id = opts.app?.installations[repo];
        if (!id) return reply(404, { message: 'Not Found' });
        return reply(200, { id, app_id: opts.app!.id, target_type: 'Organization', account: { login: params.owner }, permissions: { deployments: 'write', checks: 'write', statuses: 'write' }, events: ['check_run', 'check_suite'], repository_selection: 'selected' });
      }
      case 'apps/create-installation-access-token': {
        const installation = Number(params.installation_id);
        if (!Object.values(opts.app?.installations ?? {}).includes(installation)) return reply(404, { message: 'Not Found' });
        const token = `ghs_${randomBytes(18).toString('base64url')}`;
        const expires = Date.now() + 3_600_000;
        issued.set(token, { installation, expires });
        return reply(201, { token, expires_at: new Date(expires).toISOString().replace(/\.\d{3}Z$/, 'Z'), permissions: { deployments: 'write', checks: 'write', statuses: 'write' }, repository_selection: 'selected' });
      }
      case 'repos/create-deployment': {
        const d: DeploymentRecord = { id: nextId++, repo, ref: body.ref, environment: body.environment ?? 'production', description: body.description ?? null, payload: body.payload, statuses: [] };
        deployments.push(d);
        return reply(201, { id: d.id, ref: d.ref, sha: d.ref, environment: d.environment, task: body.task ?? 'deploy', description: d.description, payload: d.payload ?? {}, created_at: new Date().toISOString(), url: `${baseUrl}/repos/${repo}/deployments/${d.id}` });
      }
      case 'repos/create-deployment-status': {
        const d = deployments.find((x) => x.id === Number(params.deployment_id) && x.repo === repo);
        if (!d) return reply(404, { message: 'Not Found' });
        // GitHub's rule (documented on the field): at most 140 characters.
        if (typeof body.description === 'string' && body.description.length > 140) return violation(422, 'description is too long (maximum is 140 characters)');
        d.statuses.push({ state: body.state, description: body.description ?? '', log_url: body.log_url, environment_url: body.environment_url, at: Date.now() });
        return reply(201, { id: nextId++, state: body.state, description: body.description ?? '', environment: d.environment, log_url: body.log_url ?? '', environment_url: body.environment_url ?? '', created_at: new Date().toISOString() });
      }
      case 'checks/create': {
        if (body.status === 'completed' && !body.conclusion) return violation(422, 'conclusion is required when status is completed');
        const c: CheckRunRecord = { id: nextId++, repo, name: body.name, head_sha: body.head_sha, external_id: body.external_id, details_url: body.details_url, updates: [body], current: { ...body } };
        checkRuns.push(c);
        return reply(201, { id: c.id, name: c.name, head_sha: c.head_sha, status: body.status ?? 'queued', conclusion: body.conclusion ?? null, external_id: c.external_id ?? null });
      }
      case 'checks/update': {
        const c = checkRuns.find((x) => x.id === Number(params.check_run_id) && x.repo === repo);
        if (!c) return reply(404, { message: 'Not Found' });
        if (body.status === 'completed' && !body.conclusion && !c.current.conclusion) return violation(422, 'conclusion is required when status is completed');
        c.updates.push(body);
        Object.assign(c.current, body);
        return reply(200, { id: c.id, name: c.current.name, head_sha: c.head_sha, status: c.current.status, conclusion: c.current.conclusion ?? null });
      }
      case 'repos/create-commit-status': {
        if (typeof body.description === 'string' && body.description.length > 140) return violation(422, 'description is too long (maximum is 140 characters)');
        commitStatuses.push({ repo, sha: params.sha!, state: body.state, context: body.context ?? 'default', description: body.description, target_url: body.target_url, at: Date.now() });
        return reply(201, { id: nextId++, state: body.state, context: body.context ?? 'default' });
      }
      default:
        return violation(501, `operation ${match.operationId} is valid but not served by the stand-in`);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const baseUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return {
    url: baseUrl,
    requests,
    violations,
    deployments,
    checkRuns,
    commitStatuses,
    get issuedTokens() {
      return [...issued.keys()];
    },
    outage(ms, status = 502) {
      outageUntil = Date.now() + ms;
      outageStatus = status;
    },
    revokeCredentials(value) {
      revoked = value;
    },
    statusSequences(environment) {
      return deployments.filter((d) => !environment || d.environment === environment).map((d) => ({ ref: d.ref, states: d.statuses.map((s) => s.state) }));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Verifies a GitHub App JWT (RS256) and returns its claims, or undefined. */
function verifyJwt(authorization: string, key: KeyObject): Record<string, unknown> | undefined {
  const token = /^bearer\s+(.+)$/i.exec(authorization)?.[1];
  const parts = token?.split('.');
  if (!parts || parts.length !== 3) return undefined;
  const [h, p, sig] = parts as [string, string, string];
  try {
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: string };
    if (header.alg !== 'RS256') return undefined;
    const ok = createVerify('RSA-SHA256').update(`${h}.${p}`).verify(key, Buffer.from(sig, 'base64url'));
    if (!ok) return undefined;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as { iat?: number; exp?: number };
    const now = Math.floor(Date.now() / 1000);
    // GitHub: exp at most 10 minutes ahead, not expired; iat not in the future (60 s skew).
    if (typeof claims.exp !== 'number' || claims.exp < now || claims.exp > now + 600 + 60) return undefined;
    if (typeof claims.iat !== 'number' || claims.iat > now + 60) return undefined;
    return claims;
  } catch {
    return undefined;
  }
}

function ajvText(v: ValidateFunction): string {
  return (v.errors ?? []).slice(0, 3).map((e) => `${e.instancePath || '(body)'} ${e.message}${e.params && 'allowedValues' in e.params ? ` ${JSON.stringify(e.params.allowedValues)}` : ''}`).join('; ');
}
