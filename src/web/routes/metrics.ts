import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AppDeps } from '../app.ts';
import { bearerMatches } from '../auth.ts';

const RunParams = Type.Object({ id: Type.String({ pattern: '^r[a-z0-9]{8,30}$' }) });

/**
 * GET /metrics (Prometheus text format) and GET /api/runs/:id/reports, plus the hook
 * that counts webhook deliveries by event and result. Called on the root instance (not
 * as an encapsulated plugin) so the hook sees the webhook route.
 */
export async function metricsRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const integrations = deps.integrations;
  if (!integrations) return;
  const metrics = integrations.metrics;

  // The webhook route's answers are a documented contract (README): 200 ping, 202 with
  // {"runs"} or {"ignored"}, 401, 400, 413, 503. Counted from the answer, so the route
  // itself needs no metrics code.
  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.routeOptions.url === '/webhooks/github' && req.method === 'POST') {
      const status = reply.statusCode;
      const event = status === 401 ? undefined : header(req.headers['x-github-event']);
      metrics.countWebhook(event, resultOf(status, payload));
    }
    done(null, payload);
  });

  app.get('/metrics', async (req, reply) => {
    const auth = req.headers.authorization;
    const allowed = bearerMatches(auth, deps.config.auth.adminToken) || (deps.config.metrics.token !== undefined && bearerMatches(auth, deps.config.metrics.token));
    if (!allowed) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'metrics token or admin token required (Authorization: Bearer …)' });
    return reply.type(metrics.contentType).send(await metrics.text());
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

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
