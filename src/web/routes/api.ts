import { Readable } from 'node:stream';
import { protectedTargets } from '../../pipeline/rollback-targets.ts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { PipelineConfig } from '../../config/types.ts';
import { httpAnswer } from '../../lib/errors.ts';
import { RUN_STATUSES, type RunStatus, type Trigger } from '../../pipeline/states.ts';
import type { RunView } from '../../store/run-store.ts';
import type { AppDeps } from '../app.ts';
import { wantsHtml } from '../auth/plugin.ts';
import type { ConsoleKit } from '../console.ts';

const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$' }) });
const RunParams = Type.Object({ id: Type.String({ pattern: '^r[a-z0-9]{8,30}$' }) });
const Page = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  before: Type.Optional(Type.Integer({ minimum: 1 })),
};
const StatusQ = Type.Optional(Type.Union(RUN_STATUSES.map((s) => Type.Literal(s))));
const TriggerQ = Type.Optional(Type.Union(['push', 'rebuild', 'rollback', 'poll'].map((s) => Type.Literal(s))));
const RunsQuery = Type.Object({ ...Page, status: StatusQ, trigger: TriggerQ }, { additionalProperties: false });
const AllRunsQuery = Type.Object({ ...Page, status: StatusQ, trigger: TriggerQ, pipeline: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$' })) }, { additionalProperties: false });
const AuditQuery = Type.Object(
  {
    ...Page,
    actor: Type.Optional(Type.String({ maxLength: 320 })),
    action: Type.Optional(Type.String({ maxLength: 40 })),
    target: Type.Optional(Type.String({ maxLength: 100 })),
    result: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('refused'), Type.Literal('failed')])),
  },
  { additionalProperties: false },
);
const LogQuery = Type.Object({ download: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true')])) }, { additionalProperties: false });

/**
 * The outcome of a write, for both kinds of client: JSON (`status` + `body`), or a
 * browser's form post (303 to `page` on success, a page saying what went wrong if not).
 */
interface Outcome {
  status: number;
  body: unknown;
  /** Where a form post goes next. */
  page?: string;
  /** For the audit entry. */
  detail?: string;
}

function respond(kit: ConsoleKit, req: FastifyRequest, reply: FastifyReply, o: Outcome): FastifyReply {
  if (o.detail !== undefined) req.auditDetail = o.detail;
  if (o.status < 400) kit.overview.nudge();
  if (!wantsHtml(req)) return reply.code(o.status).send(o.body);
  if (o.status < 400) return reply.code(303).header('location', o.page ?? '/').send();
  const error = (o.body as { error?: string }).error ?? `HTTP ${o.status}`;
  req.auditDetail ??= error;
  return kit.message(req, reply, o.status, 'Not done', error, o.page ? { href: o.page, label: 'Back' } : undefined);
}

const notFound = (what: string, id: string): Outcome => ({ status: 404, body: { error: `no ${what} "${id}"` } });

/**
 * The JSON API. Handlers stay thin: the store and queues do the work. Writes answer
 * JSON, or redirect a browser's form post (the console's buttons are plain forms).
 */
export async function apiRoutes(app: FastifyInstance, kit: ConsoleKit): Promise<void> {
  const deps = kit.deps;
  const pipelineOf = (name: string): PipelineConfig | undefined => deps.config.pipelines.find((p) => p.name === name);
  const actorName = (req: FastifyRequest) => req.actor!.name;

  app.get('/api/whoami', async (req) => ({ name: req.actor!.name, role: req.actor!.role, via: req.actor!.via }));

  app.get('/api/pipelines', async () => deps.config.pipelines.map((p) => pipelineView(deps, p)));

  app.get<{ Params: { name: string } }>('/api/pipelines/:name', { schema: { params: NameParams } }, async (req, reply) => {
    const p = pipelineOf(req.params.name);
    if (!p) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
    return { ...pipelineView(deps, p), ...deps.integrations?.pipelineFields(p.name) };
  });

  app.get<{ Params: { name: string }; Querystring: { limit?: number; before?: number; status?: RunStatus; trigger?: Trigger } }>(
    '/api/pipelines/:name/runs',
    { schema: { params: NameParams, querystring: RunsQuery } },
    async (req, reply) => {
      if (!pipelineOf(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      const { limit = 50, before, status, trigger } = req.query;
      if (status || trigger) return kit.queries.list({ pipeline: req.params.name, status, trigger }, limit, before);
      return deps.store.listRuns(req.params.name, limit, before);
    },
  );

  app.get<{ Querystring: { limit?: number; before?: number; status?: RunStatus; trigger?: Trigger; pipeline?: string } }>(
    '/api/runs',
    { schema: { querystring: AllRunsQuery } },
    async (req) => {
      const { limit = 50, before, status, trigger, pipeline } = req.query;
      return kit.queries.list({ pipeline, status, trigger }, limit, before);
    },
  );

  app.get<{ Params: { name: string } }>('/api/pipelines/:name/deployments', { schema: { params: NameParams } }, async (req, reply) => {
    if (!pipelineOf(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
    return deps.store.deployments(req.params.name);
  });

  app.get<{ Querystring: { limit?: number; before?: number; actor?: string; action?: string; target?: string; result?: 'ok' | 'refused' | 'failed' } }>(
    '/api/audit',
    { schema: { querystring: AuditQuery } },
    async (req) => {
      const { limit = 50, before, ...filter } = req.query;
      return kit.audit.list(filter, limit, before);
    },
  );

  app.post<{ Params: { name: string } }>(
    '/api/pipelines/:name/rebuild',
    { schema: { params: NameParams }, config: { access: 'operator', audit: 'rebuild' } },
    async (req, reply) => {
      const p = pipelineOf(req.params.name);
      if (!p) return respond(kit, req, reply, notFound('pipeline', req.params.name));
      const [run] = await deps.scheduler.submit([{ pipeline: p.name, trigger: 'rebuild', commit: null, requestedBy: actorName(req) }]);
      return respond(kit, req, reply, { status: 202, body: { run: run!.id }, page: `/runs/${run!.id}`, detail: `run ${run!.id}` });
    },
  );

  const RollbackBody = Type.Union([Type.Null(), Type.Object({ deployment: Type.Optional(Type.String({ pattern: '^d[a-z0-9]{8,30}$' })) }, { additionalProperties: false })]);
  app.post<{ Params: { name: string }; Body: { deployment?: string } | null }>(
    '/api/pipelines/:name/rollback',
    { schema: { params: NameParams, body: RollbackBody }, config: { access: 'admin', audit: 'rollback' } },
    async (req, reply) => {
      const name = req.params.name;
      if (!pipelineOf(name)) return respond(kit, req, reply, notFound('pipeline', name));
      const result = await deps.scheduler.rollback(name, req.body?.deployment, actorName(req));
      if ('error' in result) return respond(kit, req, reply, { status: 409, body: { error: result.error }, page: `/pipelines/${name}#history` });
      const target = req.body?.deployment ? `deployment ${req.body.deployment}` : 'the previous deployment';
      return respond(kit, req, reply, { status: 202, body: { run: result.run.id }, page: `/runs/${result.run.id}`, detail: `to ${target} (${result.run.commit?.slice(0, 12) ?? ''}), run ${result.run.id}` });
    },
  );

  const PauseBody = Type.Union([Type.Null(), Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false })]);
  app.post<{ Params: { name: string }; Body: { reason?: string } | null }>(
    '/api/pipelines/:name/pause',
    { schema: { params: NameParams, body: PauseBody }, config: { access: 'admin', audit: 'pause' } },
    async (req, reply) => {
      const p = pipelineOf(req.params.name);
      if (!p) return respond(kit, req, reply, notFound('pipeline', req.params.name));
      const reason = req.body?.reason?.trim() || `paused by ${actorName(req)}`;
      deps.scheduler.pause(p.name, reason, actorName(req));
      return respond(kit, req, reply, { status: 200, body: pipelineView(deps, p), page: `/pipelines/${p.name}?done=paused`, detail: reason });
    },
  );

  app.post<{ Params: { name: string } }>(
    '/api/pipelines/:name/resume',
    { schema: { params: NameParams }, config: { access: 'admin', audit: 'resume' } },
    async (req, reply) => {
      const p = pipelineOf(req.params.name);
      if (!p) return respond(kit, req, reply, notFound('pipeline', req.params.name));
      const run = await deps.scheduler.resume(p.name);
      return respond(kit, req, reply, { status: 200, body: { ...pipelineView(deps, p), resumedRun: run?.id ?? null }, page: `/pipelines/${p.name}?done=resumed`, ...(run ? { detail: `queued the waiting run ${run.id}` } : {}) });
    },
  );

  app.post<{ Params: { name: string } }>(
    '/api/pipelines/:name/refresh',
    { schema: { params: NameParams }, config: { access: 'operator', audit: 'check-now' } },
    async (req, reply) => {
      const name = req.params.name;
      if (!pipelineOf(name)) return respond(kit, req, reply, notFound('pipeline', name));
      try {
        const result = await deps.poller.refresh(name, 'refresh', actorName(req));
        if (result.kind === 'queued') return respond(kit, req, reply, { status: 202, body: { run: result.run, commit: result.commit }, page: `/runs/${result.run}`, detail: `run ${result.run} for ${result.commit.slice(0, 12)}` });
        return respond(kit, req, reply, { status: 200, body: { upToDate: true, commit: result.commit, reason: result.reason }, page: `/pipelines/${name}?done=up-to-date`, detail: `up to date: ${result.reason}` });
      } catch (err) {
        // The branch head could not be read (git): the upstream failed, not us. The one
        // mapping (httpAnswer) says so; a form post is sent back to its page with it.
        const answer = httpAnswer(err);
        if (answer.status !== 502) throw err;
        return respond(kit, req, reply, { status: 502, body: { error: answer.message }, page: `/pipelines/${name}` });
      }
    },
  );

  app.post<{ Params: { id: string } }>(
    '/api/runs/:id/start',
    { schema: { params: RunParams }, config: { access: 'operator', audit: 'start' } },
    async (req, reply) => {
      const result = await deps.scheduler.startHeld(req.params.id);
      if ('error' in result) return respond(kit, req, reply, { status: result.status, body: { error: result.error }, page: `/runs/${req.params.id}` });
      return respond(kit, req, reply, { status: 202, body: { run: result.run.id }, page: `/runs/${result.run.id}` });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/api/runs/:id/cancel',
    { schema: { params: RunParams }, config: { access: 'operator', audit: 'cancel' } },
    async (req, reply) => {
      const id = req.params.id;
      const result = await deps.scheduler.cancel(id, actorName(req));
      switch (result.kind) {
        case 'not_found':
          return respond(kit, req, reply, notFound('run', id));
        case 'conflict':
          return respond(kit, req, reply, { status: 409, body: { error: result.reason }, page: `/runs/${id}` });
        default:
          return respond(kit, req, reply, { status: 202, body: { run: id, status: result.kind }, page: `/runs/${id}?done=${result.kind}`, detail: result.kind });
      }
    },
  );

  app.get<{ Params: { id: string } }>('/api/runs/:id', { schema: { params: RunParams } }, async (req, reply) => {
    const run = deps.store.getRun(req.params.id);
    if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
    return run;
  });

  app.get<{ Params: { id: string }; Querystring: { download?: string } }>('/api/runs/:id/log', { schema: { params: RunParams, querystring: LogQuery } }, async (req, reply) => {
    const run = deps.store.getRun(req.params.id);
    if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
    if (req.query.download) reply.header('content-disposition', `attachment; filename="${run.pipeline}-${run.id}.log"`);
    // Streamed chunk by chunk from the store, one chunk read ahead (highWaterMark 1): a
    // huge log never sits in memory whole, and fifty slow downloads cost fifty chunks.
    return reply.type('text/plain; charset=utf-8').send(Readable.from(deps.store.logChunks(run.id), { highWaterMark: 1 }));
  });
}

export function pipelineView(deps: AppDeps, p: PipelineConfig) {
  const last: RunView | undefined = deps.store.lastRun(p.name);
  const d = deps.store.currentDeployment(p.name);
  const pause = deps.store.pauseOf(p.name);
  return {
    name: p.name,
    repo: p.repo,
    branch: p.branch,
    image: p.image,
    tag: p.tag,
    services: p.services,
    lastRun: last ? { id: last.id, status: last.status, commit: last.commit, trigger: last.trigger, createdAt: last.createdAt, finishedAt: last.finishedAt, error: last.error, requestedBy: last.requestedBy } : null,
    deployed: d ? { commit: d.commit, image: d.image, digest: d.digest, at: d.deployedAt, run: d.runId } : null,
    paused: pause !== undefined,
    pause: pause ?? null,
    drift: deps.drift.driftOf(p.name),
    /** The protected rollback targets (retention.protect) and their manifests in the registry, as last checked. */
    rollbackTargets: deps.targets ? protectedTargets(deps.store.deployments(p.name, 200), p.retention.protect ?? 5).map((t) => ({ deployment: t.id, commit: t.commit, image: t.image, ...(deps.targets!.statusOf(t.image) ?? { state: 'unchecked' }) })) : [],
    warnings: deps.integrations?.reports.warnings(p.name) ?? [],
  };
}
