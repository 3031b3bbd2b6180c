import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PipelineConfig } from '../../config/types.ts';
import { isTerminal, RUN_STATUSES, type RunStatus, type Trigger } from '../../pipeline/states.ts';
import type { AuditResult } from '../../store/audit-store.ts';
import type { ConsoleKit } from '../console.ts';
import { html } from '../html.ts';
import { reportsSection } from '../reports-section.ts';
import { renderLog } from '../log-view.ts';
import { auditBody } from '../views/audit.ts';
import { DONE_MESSAGES, notice } from '../views/layout.ts';
import { overviewBody, runsTable, type PipelineSummary } from '../views/overview.ts';
import { historyOf, pipelineBody, TRIGGERS } from '../views/pipeline.ts';
import { runBody, runHead, type RunPageData } from '../views/run.ts';

/** The run page shows the end of the log (where failures are); Raw has all of it. */
const LOG_TAIL_LINES = 2000;
const RUN_ID = /^r[a-z0-9]{8,30}$/;

const done = (req: FastifyRequest) => {
  const key = (req.query as { done?: string } | undefined)?.done;
  const text = key ? DONE_MESSAGES[key] : undefined;
  return text ? notice('ok', text) : html``;
};
const oneOf = <T extends string>(v: unknown, allowed: readonly T[]): T | undefined => (typeof v === 'string' && (allowed as readonly string[]).includes(v) ? (v as T) : undefined);
const cursor = (v: unknown): number | undefined => (typeof v === 'string' && /^\d{1,15}$/.test(v) ? Number(v) : undefined);

/** Server-rendered pages; the overview and pipeline pages re-render live, the run page follows its run. */
export async function pageRoutes(app: FastifyInstance, kit: ConsoleKit): Promise<void> {
  const { deps, queries } = kit;
  const repoOf = (name: string) => deps.config.pipelines.find((p) => p.name === name)?.repo ?? '';

  const summarize = (p: PipelineConfig, currents = queries.currentByPipeline()): PipelineSummary => {
    const d = deps.store.currentDeployment(p.name);
    const current = currents.get(p.name);
    const paused = deps.store.pauseOf(p.name);
    return {
      config: p,
      paused: paused ?? null,
      drift: deps.drift.driftOf(p.name),
      deployed: d ? { commit: d.commit, digest: d.digest, at: d.deployedAt, run: d.runId } : null,
      servingRun: d ? queries.summariesOf([d.runId]).get(d.runId) : undefined,
      current,
      failing: queries.failingStreak(p.name),
      held: current !== undefined && paused !== undefined && current.status === 'queued' && (current.trigger === 'push' || current.trigger === 'poll'),
    };
  };

  app.get('/', async (req, reply) => {
    const currents = queries.currentByPipeline();
    const pipelines = deps.config.pipelines.map((p) => summarize(p, currents));
    return kit.page(req, reply, 'Pipelines', (ctx) => overviewBody(ctx, pipelines, queries.summaries({}, 20).runs, repoOf), { live: 'page' });
  });

  app.get<{ Querystring: Record<string, string> }>('/runs', async (req, reply) => {
    const q = req.query;
    const filter = { pipeline: oneOf(q.pipeline, deps.config.pipelines.map((p) => p.name)), status: oneOf<RunStatus>(q.status, RUN_STATUSES), trigger: oneOf<Trigger>(q.trigger, TRIGGERS) };
    const before = cursor(q.before);
    const page = queries.summaries(filter, 50, before);
    const link = (extra: Record<string, string | number | undefined>) => {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries({ ...filter, ...extra })) if (v !== undefined) p.set(k, String(v));
      return `/runs${p.size ? `?${p}` : ''}`;
    };
    const opt = (v: string, cur: string | undefined) => html`<option value="${v}"${v === (cur ?? '') ? html` selected` : ''}>${v || 'any'}</option>`;
    return kit.page(req, reply, 'Runs', (ctx) => html`<h1>Runs</h1>
<form class="filters" method="get" action="/runs"><label>Pipeline <select name="pipeline">${['', ...deps.config.pipelines.map((p) => p.name)].map((v) => opt(v, filter.pipeline))}</select></label>
<label>Status <select name="status">${['', ...RUN_STATUSES].map((v) => opt(v, filter.status))}</select></label>
<label>Trigger <select name="trigger">${['', ...TRIGGERS].map((v) => opt(v, filter.trigger))}</select></label><button type="submit">Filter</button></form>
${runsTable(ctx, page.runs, repoOf, { pipelineColumn: true })}
${page.next || before ? html`<nav class="pager" aria-label="Run pages">${before ? html`<a href="${link({})}">← Newest</a>` : ''}${page.next ? html`<a href="${link({ before: page.next })}">Older →</a>` : ''}</nav>` : ''}`, { live: 'page' });
  });

  app.get<{ Params: { name: string }; Querystring: Record<string, string> }>('/pipelines/:name', async (req, reply) => {
    const p = deps.config.pipelines.find((x) => x.name === req.params.name);
    if (!p) return kit.message(req, reply, 404, 'Not found', `No pipeline "${req.params.name}".`);
    const q = req.query;
    const filter = { status: oneOf<RunStatus>(q.status, RUN_STATUSES), trigger: oneOf<Trigger>(q.trigger, TRIGGERS), before: cursor(q.before) };
    const runs = queries.summaries({ pipeline: p.name, status: filter.status, trigger: filter.trigger }, 25, filter.before);
    const s = summarize(p);
    const held = s.paused ? deps.store.queuedRuns(p.name).filter((r) => r.trigger === 'push' || r.trigger === 'poll') : [];
    const rows = deps.store.deployments(p.name, 60);
    const behind = queries.summariesOf([...new Set(rows.map((d) => d.runId))]);
    const entries = historyOf(rows, (id) => behind.get(id)).slice(0, 20).map((e) => ({ ...e, target: deps.targets?.statusOf(e.image) }));
    return kit.page(req, reply, p.name, (ctx) => html`${done(req)}${pipelineBody(ctx, s, { ...runs, filter }, held, entries)}${reportsSection(kit.deps.integrations?.pipelineFields(p.name))}`, { live: 'page' });
  });

  app.get<{ Params: { id: string } }>('/runs/:id', async (req, reply) => {
    const run = RUN_ID.test(req.params.id) ? deps.store.getRun(req.params.id) : undefined;
    if (!run) return kit.message(req, reply, 404, 'Not found', `No run "${req.params.id}".`);
    const held = run.status === 'queued' && (run.trigger === 'push' || run.trigger === 'poll') && deps.store.pauseOf(run.pipeline) !== undefined;
    const base = { run, repo: repoOf(run.pipeline), held };
    const head = (ctx: Parameters<typeof runHead>[0]) => html`${done(req)}${runHead(ctx, { ...base, log: { html: html``, firstLine: 1, shownLines: 0, totalLines: 0, lastSeq: 0 } })}`;
    if (req.headers['x-deployer-fragment'] === 'head') return kit.page(req, reply, run.id, head, { head });
    const start = deps.store.logTailStart(run.id, LOG_TAIL_LINES);
    const chunks = deps.store.logChunksAfter(run.id, start, 100_000);
    const shown = chunks.reduce((n, c) => n + c.lines, 0);
    const total = start === 0 ? shown : queries.logLineCount(run.id);
    const firstLine = total - shown + 1;
    const data: RunPageData = { ...base, log: { html: renderLog(chunks, firstLine, { finished: isTerminal(run.status) }), firstLine, shownLines: shown, totalLines: total, lastSeq: chunks.at(-1)?.seq ?? start } };
    return kit.page(req, reply, `Run ${run.id}`, (ctx) => html`${done(req)}${runBody(ctx, data)}`, { live: 'run', head });
  });

  app.get<{ Querystring: Record<string, string> }>('/audit', async (req, reply) => {
    const q = req.query;
    const text = (v: unknown, max: number) => (typeof v === 'string' && v !== '' && v.length <= max ? v : undefined);
    const filter = { actor: text(q.actor, 320), action: text(q.action, 40), target: text(q.target, 100), result: oneOf<AuditResult>(q.result, ['ok', 'refused', 'failed']), before: cursor(q.before) };
    const { entries, next } = kit.audit.list(filter, 50, filter.before);
    return kit.page(req, reply, 'Audit', (ctx) => auditBody(ctx, entries, next, filter, kit.audit.facets()));
  });
}
