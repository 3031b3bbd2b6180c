import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { httpAnswer } from '../lib/errors.ts';
import type { AuditStore } from '../store/audit-store.ts';
import type { RunQueries } from '../store/run-queries.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { Role } from '../config/auth.ts';
import type { AppDeps } from './app.ts';
import { assetRoutes, loadAssets } from './assets.ts';
import { Authenticator } from './auth/actor.ts';
import { Auditor } from './auth/audit.ts';
import { consoleAuth, wantsHtml } from './auth/plugin.ts';
import { GithubProvider, OidcProvider, type SignInProvider } from './auth/providers.ts';
import type { SafeHtml } from './html.ts';
import { OverviewLive } from './overview-live.ts';
import { apiRoutes } from './routes/api.ts';
import { liveRoutes } from './routes/live.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { pageRoutes } from './routes/pages.ts';
import { signInRoutes } from './routes/signin.ts';
import { layout, type ViewContext } from './views/layout.ts';
import { messageBody } from './views/message.ts';
import { signInBody } from './views/signin.ts';

/** Audit entries are kept this long. */
const AUDIT_RETENTION_MS = 400 * 86_400_000;

/** What the console's routes share: the stores, who is asking, and how a page is answered. */
export interface ConsoleKit {
  deps: AppDeps;
  sessions: SessionStore;
  audit: AuditStore;
  queries: RunQueries;
  authenticator: Authenticator;
  auditor: Auditor;
  providers: SignInProvider[];
  overview: OverviewLive;
  view(req: FastifyRequest, reply: FastifyReply): ViewContext;
  /**
   * Answers with a page. A request with `x-deployer-fragment: main` (the live pages'
   * script) gets only what goes inside <main>; `head`, the `head` part when given.
   */
  page(req: FastifyRequest, reply: FastifyReply, title: string, body: (ctx: ViewContext) => SafeHtml, opts?: { live?: 'page' | 'run'; head?: (ctx: ViewContext) => SafeHtml; status?: number }): FastifyReply;
  /** A page that only says what went wrong. */
  message(req: FastifyRequest, reply: FastifyReply, status: number, title: string, text: string, back?: { href: string; label: string }): FastifyReply;
  signInPage(req: FastifyRequest, reply: FastifyReply, opts?: { status?: number; error?: string; info?: string; next?: string }): FastifyReply;
}

/** The key that signs cookies: made once, kept in the data directory (mode 0600), never in the database. */
function cookieKey(dataDir: string): string {
  const file = join(dataDir, 'cookie.key');
  try {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length >= 32) return key;
  } catch {
    /* first start */
  }
  const key = randomBytes(32).toString('base64url');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return key;
}

/** A path on this site to go to after signing in; anything else becomes "/". */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/(?![/\\])[^\s\\]*$/.test(next) && next.length < 500 ? next : '/';
}

/**
 * The console: sign-in, roles, CSRF and audit (auth/plugin.ts) around the JSON API,
 * the pages, the live streams and the sign-in routes. Everything here needs a role
 * unless its route says `access: 'public'`.
 */
export async function consoleRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { sessions, audit, queries } = deps.store;
  const authenticator = new Authenticator(deps.config.auth, sessions);
  const auditor = new Auditor(audit, deps.logger);
  const assets = loadAssets();
  const providers: SignInProvider[] = [];
  if (deps.config.auth.github) providers.push(new GithubProvider(deps.config.auth.github));
  if (deps.config.auth.oidc) providers.push(new OidcProvider(deps.config.auth.oidc));
  const overview = new OverviewLive(queries, deps.live, deps.drift, deps.config.pipelines.map((p) => p.name));
  const githubWeb = deps.config.auth.github?.webUrl ?? 'https://github.com';

  const kit: ConsoleKit = {
    deps,
    sessions,
    audit,
    queries,
    authenticator,
    auditor,
    providers,
    overview,
    view(req, reply) {
      return {
        actor: req.actor,
        csrf: reply.generateCsrf({ userInfo: req.actor?.session ?? '' } as never),
        nonce: reply.cspNonce?.script ?? '',
        assets,
        githubWeb,
        path: req.url.split('?')[0]!,
      };
    },
    page(req, reply, title, body, opts = {}) {
      const ctx = kit.view(req, reply);
      const kind = req.headers['x-deployer-fragment'];
      reply.header('cache-control', 'no-store').header('vary', 'x-deployer-fragment, cookie').type('text/html; charset=utf-8').code(opts.status ?? 200);
      if (kind === 'main') return reply.send(body(ctx).value);
      if (kind === 'head' && opts.head) return reply.send(opts.head(ctx).value);
      return reply.send(layout(ctx, title, body(ctx), opts.live ? { live: opts.live } : {}));
    },
    message(req, reply, status, title, text, back) {
      return kit.page(req, reply, title, (ctx) => messageBody(ctx, title, text, back), { status });
    },
    signInPage(req, reply, o = {}) {
      const q = req.query as { next?: string; error?: string } | undefined;
      const next = safeNext(o.next ?? q?.next ?? (req.url.startsWith('/signin') || req.url.startsWith('/auth') ? '/' : req.url));
      return kit.page(req, reply, 'Sign in', (ctx) => signInBody(ctx, { providers: providers.map((p) => ({ id: p.id, label: p.label })), next, error: o.error, info: o.info }), { status: o.status ?? 401 });
    },
  };

  await consoleAuth(app, {
    config: deps.config,
    cookieKey: cookieKey(deps.config.dataDir),
    authenticator,
    auditor,
    signInPage: (req, reply) => kit.signInPage(req, reply),
    forbiddenPage: (req, reply, need: Role) => kit.message(req, reply, 403, 'Not allowed', `This needs the role ${need}; you are signed in as ${req.actor?.name} (${req.actor?.role}).`),
  });

  // Client errors of form posts (a stale CSRF token, a bad field) are pages, not JSON.
  // What each error is answered is the one mapping's (httpAnswer), here as elsewhere.
  app.setErrorHandler((err: unknown, req, reply) => {
    const answer = httpAnswer(err);
    if (answer.log) req.log.error({ err, method: req.method, url: req.url.split('?')[0] }, 'request failed');
    if (req.routeOptions.config.audit) req.auditDetail = answer.message;
    const { status, message: text } = answer;
    if (wantsHtml(req) && req.method !== 'GET') return kit.message(req, reply, status, status === 403 ? 'Refused' : 'Not done', status === 403 ? `${text}: reload the page and try again.` : text);
    return reply.code(status).send({ error: text });
  });

  assetRoutes(app, assets);
  await apiRoutes(app, kit);
  await liveRoutes(app, kit);
  await pageRoutes(app, kit);
  await signInRoutes(app, kit);
  // GET /metrics (viewer role or metrics token) and a run's reports (viewer).
  await metricsRoutes(app, deps, (req, reply) => kit.signInPage(req, reply));

  const housekeeping = () => {
    try {
      sessions.pruneExpired();
      audit.prune(AUDIT_RETENTION_MS);
    } catch (err) {
      deps.logger.warn({ err }, 'session/audit housekeeping failed');
    }
  };
  housekeeping();
  const timer = setInterval(housekeeping, 3_600_000);
  timer.unref();
  app.addHook('onClose', async () => {
    clearInterval(timer);
    overview.close();
  });
}
