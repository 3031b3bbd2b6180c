import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { PipelineConfig } from '../../config/types.ts';
import type { RunView } from '../../store/run-store.ts';
import type { AppDeps } from '../app.ts';
import { requireAdmin } from '../auth.ts';
import { DeployerError } from '../../lib/errors.ts';

const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$' }) });
const RunParams = Type.Object({ id: Type.String({ pattern: '^r[a-z0-9]{8,30}$' }) });
const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    before: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

/** The JSON API. Handlers stay thin: the store and queues do the work. */
export async function apiRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const admin = requireAdmin(deps.config.auth.adminToken);
  const pipelineOr404 = (name: string): PipelineConfig | undefined => deps.config.pipelines.find((p) => p.name === name);

  app.get('/api/pipelines', async () => deps.config.pipelines.map((p) => pipelineView(deps, p)));

  app.get<{ Params: { name: string } }>('/api/pipelines/:name', { schema: { params: NameParams } }, async (req, reply) => {
    const p = pipelineOr404(req.params.name);
    if (!p) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
    return { ...pipelineView(deps, p), ...deps.integrations?.pipelineFields(p.name) };
  });

  app.get<{ Params: { name: string }; Querystring: { limit?: number; before?: number } }>(
    '/api/pipelines/:name/runs',
    { schema: { params: NameParams, querystring: PageQuery } },
    async (req, reply) => {
      if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      return deps.store.listRuns(req.params.name, req.query.limit ?? 50, req.query.before);
    },
  );

  app.get<{ Params: { name: string } }>('/api/pipelines/:name/deployments', { schema: { params: NameParams } }, async (req, reply) => {
    if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
    return deps.store.deployments(req.params.name);
  });

  app.post<{ Params: { name: string } }>(
    '/api/pipelines/:name/rebuild',
    { schema: { params: NameParams }, preHandler: admin },
    async (req, reply) => {
      const p = pipelineOr404(req.params.name);
      if (!p) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      const [run] = await deps.scheduler.submit([{ pipeline: p.name, trigger: 'rebuild', commit: null, requestedBy: 'admin' }]);
      return reply.code(202).send({ run: run!.id });
    },
  );

  const RollbackBody = Type.Union([Type.Null(), Type.Object({ deployment: Type.Optional(Type.String({ pattern: '^d[a-z0-9]{8,30}$' })) }, { additionalProperties: false })]);
  app.post<{ Params: { name: string }; Body: { deployment?: string } | null }>(
    '/api/pipelines/:name/rollback',
    { schema: { params: NameParams, body: RollbackBody }, preHandler: admin },
    async (req, reply) => {
      if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      const result = await deps.scheduler.rollback(req.params.name, req.body?.deployment, 'admin');
      if ('error' in result) return reply.code(409).send({ error: result.error });
      return reply.code(202).send({ run: result.run.id });
    },
  );

  const PauseBody = Type.Union([Type.Null(), Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false })]);
  app.post<{ Params: { name: string }; Body: { reason?: string } | null }>(
    '/api/pipelines/:name/pause',
    { schema: { params: NameParams, body: PauseBody }, preHandler: admin },
    async (req, reply) => {
      if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      deps.scheduler.pause(req.params.name, req.body?.reason || 'paused by admin', 'admin');
      return reply.code(200).send(pipelineView(deps, pipelineOr404(req.params.name)!));
    },
  );

  app.post<{ Params: { name: string } }>('/api/pipelines/:name/resume', { schema: { params: NameParams }, preHandler: admin }, async (req, reply) => {
    if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
    const run = await deps.scheduler.resume(req.params.name);
    return reply.code(200).send({ ...pipelineView(deps, pipelineOr404(req.params.name)!), resumedRun: run?.id ?? null });
  });

  app.post<{ Params: { name: string } }>(
    '/api/pipelines/:name/refresh',
    { schema: { params: NameParams }, preHandler: admin },
    async (req, reply) => {
      if (!pipelineOr404(req.params.name)) return reply.code(404).send({ error: `no pipeline "${req.params.name}"` });
      try {
        const result = await deps.poller.refresh(req.params.name, 'refresh');
        if (result.kind === 'queued') return reply.code(202).send({ run: result.run, commit: result.commit });
        return reply.code(200).send({ upToDate: true, commit: result.commit, reason: result.reason });
      } catch (err) {
        // The branch head could not be read (git): the upstream failed, not us.
        if (err instanceof DeployerError) return reply.code(502).send({ error: err.message });
        throw err;
      }
    },
  );

  app.post<{ Params: { id: string } }>('/api/runs/:id/start', { schema: { params: RunParams }, preHandler: admin }, async (req, reply) => {
    const result = await deps.scheduler.startHeld(req.params.id);
    if ('error' in result) return reply.code(result.status).send({ error: result.error });
    return reply.code(202).send({ run: result.run.id });
  });

  app.post<{ Params: { id: string } }>('/api/runs/:id/cancel', { schema: { params: RunParams }, preHandler: admin }, async (req, reply) => {
    const result = await deps.scheduler.cancel(req.params.id, 'admin');
    switch (result.kind) {
      case 'not_found':
        return reply.code(404).send({ error: `no run "${req.params.id}"` });
      case 'conflict':
        return reply.code(409).send({ error: result.reason });
      default:
        return reply.code(202).send({ run: req.params.id, status: result.kind });
    }
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', { schema: { params: RunParams } }, async (req, reply) => {
    const run = deps.store.getRun(req.params.id);
    if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
    return run;
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id/log', { schema: { params: RunParams } }, async (req, reply) => {
    const run = deps.store.getRun(req.params.id);
    if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
    // Streamed chunk by chunk from the store: a huge log never sits in memory whole.
    const { Readable } = await import('node:stream');
    return reply.type('text/plain; charset=utf-8').send(Readable.from(deps.store.logChunks(run.id)));
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
    lastRun: last ? { id: last.id, status: last.status, commit: last.commit, trigger: last.trigger, createdAt: last.createdAt, finishedAt: last.finishedAt, error: last.error } : null,
    deployed: d ? { commit: d.commit, image: d.image, digest: d.digest, at: d.deployedAt, run: d.runId } : null,
    paused: pause !== undefined,
    pause: pause ?? null,
    drift: deps.drift.driftOf(p.name),
    warnings: deps.integrations?.reports.warnings(p.name) ?? [],
  };
}
