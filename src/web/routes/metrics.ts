import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Secret } from '../../lib/secret.ts';
import type { AppDeps } from '../app.ts';
import { wantsHtml } from '../auth/plugin.ts';

const RunParams = Type.Object({ id: Type.String({ pattern: '^r[a-z0-9]{8,30}$' }) });

/**
 * Counts webhook deliveries by event and result (deployer_webhooks_total). Added on the
 * root instance so it sees the webhook route. The route's answers are a documented
 * contract (README): 200 ping, 202 with {"runs"} or {"ignored"}, 401, 400, 413, 503;
 * they are counted from the answer, so the route itself needs no metrics code.
 */
export function webhookMetrics(app: FastifyInstance, deps: AppDeps): void {
  const metrics = deps.integrations?.metrics;
  if (!metrics) return;
  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.routeOptions.url === '/webhooks/github' && req.method === 'POST') {
      const status = reply.statusCode;
      // A delivery whose signature was refused names no event worth a label.
      const event = status === 401 ? undefined : header(req.headers['x-github-event']);
      metrics.countWebhook(event, resultOf(status, payload));
    }
    done(null, payload);
  });
}

/**
 * GET /metrics (Prometheus text format) and GET /api/runs/:id/reports, inside the
 * console's scope: /metrics is readable by anyone signed in (any role, e.g. viewer) or
 * with the `metrics.token` as a Bearer token (a scraper needs no console account);
 * the reports need the viewer role like the rest of the API.
 */
export async function metricsRoutes(app: FastifyInstance, deps: AppDeps, signInPage?: (req: FastifyRequest, reply: FastifyReply) => FastifyReply): Promise<void> {
  const integrations = deps.integrations;
  if (!integrations) return;
  const metrics = integrations.metrics;
  const token = deps.config.metrics.token;

  // 'public' to the console's auth hook (so an unknown Bearer token, the metrics token,
  // reaches this handler); the handler decides.
  app.get('/metrics', { config: { access: 'public' } }, async (req, reply) => {
    const allowed = req.actor !== undefined || (token !== undefined && bearerMatches(req.headers.authorization, token));
    if (!allowed) {
      // A browser gets the sign-in page, as everywhere else in the console.
      if (signInPage && wantsHtml(req)) return signInPage(req, reply);
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'sign in, or send the metrics token (Authorization: Bearer …)' });
    }
    return reply.type(metrics.contentType).header('cache-control', 'no-store').send(await metrics.text());
  });

  /** What was posted to GitHub and sent to receivers about one run, with bodies and attempts. */
  app.get<{ Params: { id: string } }>('/api/runs/:id/reports', { schema: { params: RunParams } }, async (req, reply) => {
    const run = deps.store.getRun(req.params.id);
    if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
    return {
      github: integrations.reports.stepsOfRun(run.id).map((s) => ({
        seq: s.seq,
        kind: s.kind,
        state: s.state,
        status: s.status,
        body: s.body,
        attempts: integrations.reports.attempts('github', String(s.seq)),
        createdAt: s.createdAt,
        doneAt: s.doneAt,
      })),
      notifications: integrations.notifications.ofRun(run.id).map((n) => ({
        id: n.id,
        event: n.event,
        channel: n.channel,
        receiver: n.label,
        status: n.status,
        body: JSON.parse(n.body) as unknown,
        attempts: integrations.reports.attempts('notify', n.id),
        createdAt: n.createdAt,
        doneAt: n.doneAt,
      })),
    };
  });
}

function resultOf(status: number, payload: unknown): string {
  if (status === 200) return 'ping';
  if (status === 202) {
    const text = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8', 0, 32) : '';
    return text.startsWith('{"ignored"') ? 'ignored' : 'accepted';
  }
  if (status === 401) return 'unauthorized';
  if (status === 413) return 'too_large';
  if (status === 503) return 'unavailable';
  if (status >= 400 && status < 500) return 'invalid';
  return 'error';
}

/** `Authorization: Bearer <token>` against the metrics token, in constant time (digests of equal length). */
function bearerMatches(header: string | undefined, token: Secret): boolean {
  const given = /^\s*bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
  if (given === undefined) return false;
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(token.reveal()));
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
