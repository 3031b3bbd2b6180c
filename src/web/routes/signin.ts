import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { DeployerError } from '../../lib/errors.ts';
import type { SessionProvider } from '../../store/session-store.ts';
import { crossSite, SESSION_COOKIE, wantsHtml } from '../auth/plugin.ts';
import type { PendingSignIn, SignInProvider } from '../auth/providers.ts';
import { safeNext, type ConsoleKit } from '../console.ts';

const PENDING_COOKIE = 'deployer_signin';
/** Sign-in attempts per client address per minute (each route). */
const SIGN_IN_RATE = { max: 10, timeWindow: 60_000 };

/**
 * Sign-in and sign-out: GET /signin (the page), POST /auth/token (a token's role for a
 * browser session), GET /auth/{github,oidc} and their callbacks, POST /auth/logout.
 * The token form needs no CSRF token (the token itself is the credential); sign-out
 * and sign-in refuse requests that a browser says come from another site.
 */
export async function signInRoutes(app: FastifyInstance, kit: ConsoleKit): Promise<void> {
  const { deps, sessions, auditor, authenticator } = kit;
  const secure = deps.config.publicUrl.startsWith('https://');
  const ttl = deps.config.auth.sessionTtlMs;

  const startSession = (req: FastifyRequest, reply: FastifyReply, s: { provider: SessionProvider; login: string; keys: string[]; role: string }) => {
    const id = sessions.create({ ...s, address: req.ip, ttlMs: ttl });
    reply.setCookie(SESSION_COOKIE, id, { path: '/', httpOnly: true, sameSite: 'lax', secure, signed: true, maxAge: Math.floor(ttl / 1000) });
    auditor.record({ actor: { name: s.login, role: s.role, via: `session:${s.provider}` }, ip: req.ip }, 'sign-in', null, 'ok', `${s.provider === 'token' ? 'with a token' : `with ${s.provider}`}; session for ${Math.round(ttl / 3_600_000)} h`);
    req.log.info({ actor: s.login, role: s.role, provider: s.provider }, 'signed in');
  };

  app.get('/signin', { config: { access: 'public' } }, async (req, reply) => {
    const q = req.query as { done?: string };
    if (req.actor && req.actor.via !== 'anonymous' && !q.done) return reply.code(303).header('location', '/').send();
    return kit.signInPage(req, reply, { status: 200, ...(q.done === 'signed-out' ? { info: 'Signed out.' } : {}) });
  });

  const TokenBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }), next: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
  app.post<{ Body: { token: string; next?: string } }>(
    '/auth/token',
    { schema: { body: TokenBody }, config: { access: 'public', csrf: false, rateLimit: SIGN_IN_RATE } },
    async (req, reply) => {
      if (crossSite(req, deps.config.publicUrl)) return reply.code(403).send({ error: 'cross-site sign-in refused' });
      const token = authenticator.tokenNamed(req.body.token.trim());
      if (!token) {
        auditor.record({ actor: undefined, ip: req.ip }, 'sign-in', null, 'refused', 'with a token: unknown token');
        if (wantsHtml(req)) return kit.signInPage(req, reply, { status: 401, error: 'That token is not valid.', next: safeNext(req.body.next) });
        return reply.code(401).send({ error: 'unknown token' });
      }
      startSession(req, reply, { provider: 'token', login: token.name, keys: [token.name], role: token.role });
      return reply.code(303).header('location', safeNext(req.body.next)).send();
    },
  );

  app.post('/auth/logout', { config: { access: 'public', csrf: false } }, async (req, reply) => {
    if (crossSite(req, deps.config.publicUrl)) return reply.code(403).send({ error: 'cross-site sign-out refused' });
    const cookie = req.cookies[SESSION_COOKIE];
    const unsigned = cookie ? req.unsignCookie(cookie) : undefined;
    if (unsigned?.valid && unsigned.value && sessions.delete(unsigned.value)) {
      auditor.record({ actor: req.actor, ip: req.ip }, 'sign-out', null, 'ok');
    }
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.code(303).header('location', '/signin?done=signed-out').send();
  });

  for (const provider of kit.providers) providerRoutes(app, kit, provider, startSession);
}

function providerRoutes(
  app: FastifyInstance,
  kit: ConsoleKit,
  provider: SignInProvider,
  startSession: (req: FastifyRequest, reply: FastifyReply, s: { provider: SessionProvider; login: string; keys: string[]; role: string }) => void,
): void {
  const { deps, auditor, authenticator } = kit;
  const secure = deps.config.publicUrl.startsWith('https://');
  const redirectUri = `${deps.config.publicUrl}/auth/${provider.id}/callback`;
  const cookiePath = `/auth/${provider.id}`;

  app.get<{ Querystring: { next?: string } }>(`/auth/${provider.id}`, { config: { access: 'public', rateLimit: SIGN_IN_RATE } }, async (req, reply) => {
    let start;
    try {
      start = await provider.start(redirectUri);
    } catch (err) {
      req.log.warn({ err: { message: (err as Error).message }, provider: provider.id }, 'sign-in could not start');
      return kit.signInPage(req, reply, { status: 502, error: `Sign-in with ${provider.label} is not available right now: ${(err as Error).message}` });
    }
    const pending = { ...start.pending, next: safeNext(req.query.next) };
    reply.setCookie(PENDING_COOKIE, Buffer.from(JSON.stringify(pending)).toString('base64url'), { path: cookiePath, httpOnly: true, sameSite: 'lax', secure, signed: true, maxAge: 600 });
    return reply.code(302).header('location', start.url).send();
  });

  app.get(`/auth/${provider.id}/callback`, { config: { access: 'public', rateLimit: SIGN_IN_RATE } }, async (req, reply) => {
    const raw = req.cookies[PENDING_COOKIE];
    const unsigned = raw ? req.unsignCookie(raw) : undefined;
    reply.clearCookie(PENDING_COOKIE, { path: cookiePath });
    let pending: (PendingSignIn & { next: string }) | undefined;
    try {
      pending = unsigned?.valid && unsigned.value ? (JSON.parse(Buffer.from(unsigned.value, 'base64url').toString()) as PendingSignIn & { next: string }) : undefined;
    } catch {
      pending = undefined;
    }
    if (!pending) return kit.signInPage(req, reply, { status: 400, error: 'That sign-in took too long or was started elsewhere. Please try again.' });
    const error = (req.query as { error?: string; error_description?: string }).error;
    if (error) return kit.signInPage(req, reply, { status: 401, error: `${provider.label} said: ${(req.query as { error_description?: string }).error_description ?? error}` });
    let identity;
    try {
      identity = await provider.finish(new URL(req.url, deps.config.publicUrl), pending);
    } catch (err) {
      const message = err instanceof DeployerError ? err.message : `sign-in with ${provider.label} failed`;
      req.log.warn({ err: { message: (err as Error).message }, provider: provider.id }, 'sign-in failed');
      auditor.record({ actor: undefined, ip: req.ip }, 'sign-in', null, 'refused', `with ${provider.id}: ${message}`);
      return kit.signInPage(req, reply, { status: 403, error: message });
    }
    const role = authenticator.roleFor(identity.keys);
    if (!role) {
      auditor.record({ actor: { name: identity.login, role: null, via: `session:${identity.provider}` }, ip: req.ip }, 'sign-in', null, 'refused', `with ${provider.id}: not listed in auth.users and no auth.defaultRole`);
      return kit.signInPage(req, reply, { status: 403, error: `${identity.login} is not allowed here. Ask an admin to add you to auth.users.` });
    }
    startSession(req, reply, { provider: identity.provider, login: identity.login, keys: identity.keys, role });
    return reply.code(303).header('location', pending.next).send();
  });
}
