import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Role } from '../../config/auth.ts';
import type { Config } from '../../config/types.ts';
import type { AuditResult } from '../../store/audit-store.ts';
import { allowed, ANONYMOUS, type Access, type Actor, type Authenticator } from './actor.ts';
import type { Auditor } from './audit.ts';

export const SESSION_COOKIE = 'deployer_session';
export const CSRF_COOKIE = 'deployer_csrf';

/** Per-route settings (Fastify route `config`). */
export interface ConsoleRouteConfig {
  /** Who may call it: 'public', or the least role (default viewer). */
  access?: Access;
  /** Record every call in the audit trail under this action; the target is the :name or :id param. */
  audit?: string;
  /** false: no CSRF token needed for cookie sessions (sign-in/out, checked by Origin instead). */
  csrf?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig extends ConsoleRouteConfig {}
  interface FastifyRequest {
    /** Who is asking (undefined: nobody, and the route is public). */
    actor: Actor | undefined;
    /** What the audit entry of this request says beyond its result (e.g. the run created). */
    auditDetail: string | undefined;
  }
}

export interface ConsoleAuthDeps {
  config: Config;
  cookieKey: string;
  authenticator: Authenticator;
  auditor: Auditor;
  /** Answer for a page asked by someone not signed in: the sign-in page, status 401. */
  signInPage(req: FastifyRequest, reply: FastifyReply): FastifyReply;
  /** Answer for a page asked without the role: status 403. */
  forbiddenPage(req: FastifyRequest, reply: FastifyReply, need: Role): FastifyReply;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Whether the client prefers a page (a browser navigating) over JSON. */
export function wantsHtml(req: FastifyRequest): boolean {
  const ct = req.headers['content-type'] ?? '';
  if (ct.startsWith('application/x-www-form-urlencoded')) return true;
  const accept = req.headers.accept ?? '';
  return accept.includes('text/html');
}

/**
 * Sign-in, roles, CSRF and the audit trail for every route registered after it in the
 * same scope. Credentials are an `Authorization: Bearer` token or the signed session
 * cookie; a cookie-authenticated request that changes anything must also carry the
 * CSRF token (form field `_csrf` or header `x-csrf-token`), which is bound to its session.
 */
export async function consoleAuth(app: FastifyInstance, deps: ConsoleAuthDeps): Promise<void> {
  const { config, authenticator, auditor } = deps;
  const secure = config.publicUrl.startsWith('https://');
  await app.register(fastifyCookie, { secret: deps.cookieKey });
  await app.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
  await app.register(fastifyCsrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/', sameSite: 'lax', httpOnly: true, signed: true, secure },
    // A token made for one session is refused in another (and after sign-out).
    getUserInfo: (req: FastifyRequest) => req.actor?.session ?? '',
    csrfOpts: { hmacKey: deps.cookieKey },
  });
  await app.register(fastifyRateLimit, { global: false });
  await app.register(fastifyHelmet, {
    enableCSPNonces: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        // Scripts only from here, and only with this response's nonce if inline (there are none).
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'img-src': ["'self'", 'data:'],
        'connect-src': ["'self'"],
        'form-action': ["'self'"],
        'base-uri': ["'none'"],
        'frame-ancestors': ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    hsts: secure ? { maxAge: 31_536_000, includeSubDomains: false } : false,
    referrerPolicy: { policy: 'same-origin' },
  });

  app.decorateRequest('actor', undefined);
  app.decorateRequest('auditDetail', undefined);

  app.addHook('onRequest', async (req, reply) => {
    const access: Access = req.routeOptions.config.access ?? 'viewer';
    const header = req.headers.authorization;
    if (header !== undefined) {
      const token = authenticator.fromAuthorization(header);
      if (!token) {
        if (access === 'public') return;
        auditor.tokenRefused(req.ip, req.method, req.url.split('?')[0]!);
        return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unknown token (Authorization: Bearer <token>)' });
      }
      req.actor = { name: token.name, role: token.role, via: 'token', key: `t:${token.name}`, session: undefined };
      auditor.tokenUsed(req, req.method, req.url.split('?')[0]!);
    } else {
      const cookie = req.cookies[SESSION_COOKIE];
      if (cookie) {
        const unsigned = req.unsignCookie(cookie);
        req.actor = unsigned.valid && unsigned.value ? authenticator.fromSession(unsigned.value) : undefined;
        // A dead session's cookie goes, so the browser stops sending it.
        if (!req.actor) reply.clearCookie(SESSION_COOKIE, { path: '/' });
      }
      if (!req.actor && config.auth.public) req.actor = ANONYMOUS;
    }
    const verdict = allowed(req.actor, access);
    if (verdict === 'ok') return;
    if (verdict === 'unauthenticated') {
      if (req.method === 'GET' && wantsHtml(req)) return deps.signInPage(req, reply);
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'sign in first (or send Authorization: Bearer <token>)' });
    }
    const need = access as Role;
    req.auditDetail = `needs role ${need}`;
    if (req.method === 'GET' && wantsHtml(req)) return deps.forbiddenPage(req, reply, need);
    return reply.code(403).send({ error: `role ${need} required; you are ${req.actor!.name} (${req.actor!.role})` });
  });

  // After the body is parsed, before it is validated: the CSRF check reads the form field.
  app.addHook('preValidation', (req, reply, done) => {
    const needsToken = !SAFE_METHODS.has(req.method) && req.actor?.via.startsWith('session:') && req.routeOptions.config.csrf !== false;
    const strip = () => {
      if (req.body && typeof req.body === 'object' && '_csrf' in req.body) delete (req.body as Record<string, unknown>)._csrf;
      done();
    };
    if (!needsToken) return strip();
    app.csrfProtection(req, reply, () => strip());
  });

  app.addHook('onSend', (req, reply, payload, done) => {
    // The reason a write failed, for its audit entry (JSON errors; pages set auditDetail).
    if (req.routeOptions.config.audit && reply.statusCode >= 400 && req.auditDetail === undefined && typeof payload === 'string' && payload.startsWith('{')) {
      try {
        const e = (JSON.parse(payload) as { error?: unknown }).error;
        if (typeof e === 'string') req.auditDetail = e;
      } catch {
        /* not JSON */
      }
    }
    done(null, payload);
  });

  app.addHook('onResponse', (req, reply, done) => {
    const action = req.routeOptions.config.audit;
    // Anonymous refusals are not recorded (anyone could fill the trail); they are logged.
    if (action && req.actor) {
      const status = reply.statusCode;
      const result: AuditResult = status < 400 ? 'ok' : status === 401 || status === 403 ? 'refused' : 'failed';
      const params = req.params as { name?: string; id?: string } | undefined;
      auditor.record(req, action, params?.name ?? params?.id ?? null, result, req.auditDetail ?? (result === 'ok' ? null : `HTTP ${status}`));
    }
    done();
  });
}

/** Whether a cross-site page could have sent this request (the Origin names another site). */
export function crossSite(req: FastifyRequest, publicUrl: string): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return req.headers['sec-fetch-site'] === 'cross-site';
  if (origin === 'null') return true;
  const host = req.headers.host;
  try {
    const o = new URL(origin);
    return o.origin !== new URL(publicUrl).origin && o.host !== host;
  } catch {
    return true;
  }
}
