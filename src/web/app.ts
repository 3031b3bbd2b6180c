import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { RollbackTargetChecks } from '../pipeline/rollback-targets.ts';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { httpAnswer } from '../lib/errors.ts';
import { withTimeout } from '../lib/timeout.ts';
import type { DriftWatcher } from '../monitor/drift.ts';
import type { BranchPoller } from '../queue/poller.ts';
import type { Scheduler } from '../queue/scheduler.ts';
import type { RunStore } from '../store/run-store.ts';
import { consoleRoutes } from './console.ts';
import type { LiveRuns } from './live.ts';
import { webhookMetrics } from './routes/metrics.ts';
import type { Integrations } from '../report/integrations.ts';
import { webhookRoutes } from './routes/webhooks.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered (method, url). */
    routeList: readonly { method: string; url: string }[];
  }
}

export interface HealthCheck {
  name: string;
  check(): Promise<void>;
}

export interface AppDeps {
  config: Config;
  store: RunStore;
  scheduler: Scheduler;
  poller: BranchPoller;
  drift: DriftWatcher;
  health: HealthCheck[];
  /** Whether this process owns the store or stands by (a start-first successor); /healthz says it. */
  ownership?: () => 'owner' | 'standby';
  /** Live run views (server-sent events). */
  live: LiveRuns;
  /** Rollback targets' manifests in the registry (shown on the pipeline page). */
  targets?: RollbackTargetChecks;
  logger: Logger;
  /** GitHub reports, notifications and metrics (src/report/integrations.ts). */
  integrations?: Integrations;
}

/** Builds the HTTP app without listening, so tests can `inject()` or listen on port 0. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Two log lines per request cost more than answering an ignored webhook: requests
    // are logged once, by the hook below, at debug level unless they failed.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // A slow or stalled client cannot hold a connection and its buffers: its whole request
    // within http.requestTimeout (then 408 and close), headers within http.headersTimeout,
    // checked every second; a socket idle for 2 minutes is closed (live views ping every
    // 15 s); keep-alive connections idle 72 s (longer than proxies' usual 60 s).
    requestTimeout: deps.config.http.requestTimeoutMs,
    connectionTimeout: 120_000,
    keepAliveTimeout: 72_000,
    http: { requestTimeout: deps.config.http.requestTimeoutMs, headersTimeout: deps.config.http.headersTimeoutMs, connectionsCheckingInterval: 1000 },
    // Only the configured proxies' X-Forwarded-For is believed: the audit trail records
    // client addresses, and anyone can send that header.
    trustProxy: deps.config.trustProxy.length ? deps.config.trustProxy : false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true } },
  });

  // One error handler, one mapping (httpAnswer): refusals keep their message, a service
  // that is down gets 503, and a server error never leaks its details (they are logged).
  app.setErrorHandler((err: unknown, req, reply) => {
    const answer = httpAnswer(err);
    if (answer.log) req.log.error({ err, method: req.method, url: req.url.split('?')[0] }, 'request failed');
    return reply.code(answer.status).send({ error: answer.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
  // Both hooks run on every request: callback style (no promise each), and the log
  // line is only built when its level is on.
  app.addHook('onResponse', (req, reply, done) => {
    const level = reply.statusCode >= 500 ? 'error' : reply.statusCode >= 400 ? 'info' : 'debug';
    if (deps.logger.isLevelEnabled(level)) {
      req.log[level]({ method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    }
    done();
  });
  app.addHook('onSend', (_req, reply, payload, done) => {
    reply.header('x-frame-options', 'DENY');
    reply.header('x-content-type-options', 'nosniff');
    done(null, payload);
  });

  // Every route, for tests that check each one (e.g. that none answers anonymously).
  const routes: { method: string; url: string }[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of ([] as string[]).concat(r.method)) routes.push({ method, url: r.url });
  });
  app.decorate('routeList', routes);

  // Counts webhook answers by event and result (deployer_webhooks_total).
  webhookMetrics(app, deps);
  await app.register(async (scope) => webhookRoutes(scope, deps));
  // The console: JSON API, pages, live streams and sign-in, behind roles (src/web/auth).
  await app.register(async (scope) => consoleRoutes(scope, deps));

  app.get('/healthz', async (_req, reply) => {
    const results = await Promise.all(
      deps.health.map(async (h) => {
        try {
          await withTimeout(h.check(), 2000, 'no answer');
          return [h.name, 'ok'] as const;
        } catch (err) {
          return [h.name, (err as Error).message || 'failed'] as const;
        }
      }),
    );
    const failing = results.filter(([, r]) => r !== 'ok').map(([n]) => n);
    // A standby is healthy: it serves HTTP and webhooks; it must pass its health check
    // for swarm to stop the predecessor that holds the store.
    return reply.code(failing.length ? 503 : 200).send({
      status: failing.length ? 'unavailable' : 'ok', failing, checks: Object.fromEntries(results),
      ...(deps.ownership ? { store: deps.ownership() } : {}),
      ...(deps.config.environment.revision ? { revision: deps.config.environment.revision } : {}),
    });
  });
  return app;
}

