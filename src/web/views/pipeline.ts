import { stringify } from 'yaml';
import { RUN_STATUSES } from '../../pipeline/states.ts';
import { Secret } from '../../lib/secret.ts';
import type { RunSummary } from '../../store/run-queries.ts';
import type { TargetState } from '../../pipeline/rollback-targets.ts';
import type { DeploymentView } from '../../store/run-store.ts';
import { html, type SafeHtml } from '../html.ts';
import { actionForm, ago, can, commitLink, shortSha, status, type ViewContext } from './layout.ts';
import { badges, runsTable, stageStrip, type PipelineSummary } from './overview.ts';

export const TRIGGERS = ['push', 'rebuild', 'rollback', 'poll'] as const;

export interface RunsPage {
  runs: RunSummary[];
  next: number | null;
  filter: { status?: string | undefined; trigger?: string | undefined; before?: number | undefined };
}

/** One entry of the history: a run's deployment to every service it updated. */
export interface HistoryEntry {
  id: string;
  commit: string;
  image: string;
  digest: string;
  runId: string;
  services: string[];
  deployedAt: string;
  replacedAt: string | null;
  subject: string | null;
  author: string | null;
  /** The image's manifest in the registry, as last checked (rollback targets only). */
  target?: TargetState | undefined;
}

/** Deployment rows (one per service) grouped by the run that made them, newest first. */
export function historyOf(rows: DeploymentView[], runOf: (id: string) => RunSummary | undefined): HistoryEntry[] {
  const byRun = new Map<string, HistoryEntry>();
  for (const d of rows) {
    const e = byRun.get(d.runId);
    if (e) {
      e.services.push(d.service);
      if (d.replacedAt === null) e.replacedAt = null;
      continue;
    }
    const run = runOf(d.runId);
    byRun.set(d.runId, { id: d.id, commit: d.commit, image: d.image, digest: d.digest, runId: d.runId, services: [d.service], deployedAt: d.deployedAt, replacedAt: d.replacedAt, subject: run?.subject ?? null, author: run?.author ?? null });
  }
  return [...byRun.values()];
}

/** The effective config, with anything secret-looking masked. */
export function maskedConfig(value: unknown, key = ''): unknown {
  if (value instanceof Secret) return '••••••';
  if (typeof value === 'string') {
    if (/password|secret|token|credential|apikey|api_key/i.test(key)) return '••••••';
    if (/^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(value)) {
      try {
        const u = new URL(value);
        if (u.password) u.password = '••••••';
        return u.href;
      } catch {
        return value;
      }
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => maskedConfig(v, key));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskedConfig(v, k)]));
  return value;
}

/** The config does not change while the process runs: its YAML is made once per pipeline. */
const yamlCache = new WeakMap<object, string>();
function configYaml(c: PipelineSummary['config']): string {
  let y = yamlCache.get(c);
  if (y === undefined) yamlCache.set(c, (y = stringify(maskedConfig(c))));
  return y;
}

function filters(ctx: ViewContext, name: string, f: RunsPage['filter']): SafeHtml {
  const opt = (v: string, cur: string | undefined) => html`<option value="${v}"${v === (cur ?? '') ? html` selected` : ''}>${v || 'any'}</option>`;
  return html`<form class="filters" method="get" action="/pipelines/${name}#runs">
<label>Status <select name="status">${['', ...RUN_STATUSES].map((s) => opt(s, f.status))}</select></label>
<label>Trigger <select name="trigger">${['', ...TRIGGERS].map((t) => opt(t, f.trigger))}</select></label>
<button type="submit">Filter</button>${f.status || f.trigger ? html` <a href="/pipelines/${name}#runs">Clear</a>` : ''}</form>`;
}

function pager(base: string, f: RunsPage['filter'], next: number | null): SafeHtml {
  const q = (extra: Record<string, string | number | undefined>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ status: f.status, trigger: f.trigger, ...extra })) if (v !== undefined && v !== '') p.set(k, String(v));
    const s = p.toString();
    return `${base}${s ? `?${s}` : ''}#runs`;
  };
  if (!next && !f.before) return html``;
  return html`<nav class="pager" aria-label="Run pages">${f.before ? html`<a href="${q({})}">← Newest</a>` : ''}${next ? html`<a href="${q({ before: next })}">Older →</a>` : ''}</nav>`;
}

function history(ctx: ViewContext, s: PipelineSummary, entries: HistoryEntry[]): SafeHtml {
  if (entries.length === 0) return html`<p class="empty">No deployments yet.</p>`;
  const admin = can(ctx, 'admin');
  return html`<div class="tw"><table><thead><tr><th>Commit</th><th class="hide-narrow">Image</th><th>Deployed</th><th>Until</th>${admin ? html`<th><span class="sr">Actions</span></th>` : ''}</tr></thead><tbody>
${entries.map((e) => {
  const serving = e.replacedAt === null;
  const gone = e.target?.state === 'missing' ? e.target : undefined;
  return html`<tr><td class="subj">${commitLink(ctx, s.config.repo, e.commit)} ${e.subject ?? ''}<div class="small muted">${e.author ?? ''} · <a href="/runs/${e.runId}">run ${e.runId.slice(-8)}</a> · ${e.services.join(', ')}</div>${gone ? html`<div class="small target-gone">${status('missing')} image gone from the registry (checked ${ago(gone.checkedAt)}): no rollback to it</div>` : ''}</td>
<td class="hide-narrow mono small" title="${e.image}">${e.digest.slice(0, 19)}</td><td>${ago(e.deployedAt)}</td><td>${serving ? html`<strong>serving now</strong>` : ago(e.replacedAt)}</td>
${admin ? html`<td>${serving || gone ? '' : html`<details class="confirm"><summary class="button danger">Roll back…</summary><div class="pop"><span>Redeploy ${shortSha(e.commit)} exactly as built (no rebuild) and pause the pipeline?</span>${actionForm(ctx, `/api/pipelines/${s.config.name}/rollback`, `Roll back to ${shortSha(e.commit)}`, { cls: 'danger', fields: html`<input type="hidden" name="deployment" value="${e.id}">` })}</div></details>`}</td>` : ''}</tr>`;
})}</tbody></table></div>`;
}

export function pipelineBody(ctx: ViewContext, s: PipelineSummary, runs: RunsPage, held: RunSummary[], entries: HistoryEntry[]): SafeHtml {
  const c = s.config;
  const op = can(ctx, 'operator');
  const admin = can(ctx, 'admin');
  const actions = op || admin
    ? html`<div class="actions">${op ? actionForm(ctx, `/api/pipelines/${c.name}/rebuild`, 'Rebuild', { cls: 'primary' }) : ''}${op ? actionForm(ctx, `/api/pipelines/${c.name}/refresh`, 'Check now') : ''}
${admin ? (s.paused ? actionForm(ctx, `/api/pipelines/${c.name}/resume`, 'Resume') : html`<details class="confirm"><summary class="button">Pause…</summary><form class="pop" method="post" action="/api/pipelines/${c.name}/pause"><input type="hidden" name="_csrf" value="${ctx.csrf}"><label>Reason <input name="reason" maxlength="500" placeholder="e.g. release freeze"></label><button type="submit">Pause</button></form></details>`) : ''}</div>`
    : '';
  const heldList = held.length
    ? html`<h2>Waiting while paused</h2><div class="tw"><table><tbody>${held.map((r) => html`<tr><td>${status('held')}</td><td class="subj">${commitLink(ctx, c.repo, r.commit)} ${r.subject ?? ''} <span class="muted">${ago(r.createdAt)}</span></td><td><a href="/runs/${r.id}">run</a></td>${op ? html`<td>${actionForm(ctx, `/api/runs/${r.id}/start`, 'Start')}</td>` : ''}</tr>`)}</tbody></table></div>`
    : '';
  return html`<h1>${c.name} ${badges(s)}</h1>
<p class="muted"><span class="mono">${c.repo}@${c.branch}</span> → <span class="mono">${c.image}:${c.tag}</span> → ${c.services.join(', ') || 'no services'}</p>
${s.paused ? html`<div class="notice warn">Paused by ${s.paused.by} ${ago(s.paused.at)}: ${s.paused.reason}. New pushes wait here until it is resumed.</div>` : ''}
${s.drift?.length ? html`<div class="notice bad">${s.drift.map((d) => html`Drift: ${d.service} runs <code>${d.actual ?? '(service gone)'}</code>, not the deployed <code>${d.recorded}</code>. `)}</div>` : ''}
${actions}
${s.current ? html`<div class="card"><a href="/runs/${s.current.id}">${status(s.held ? 'held' : s.current.status)}</a> ${commitLink(ctx, c.repo, s.current.commit)} ${s.current.subject ?? ''}${stageStrip(s.current)}</div>` : ''}
${heldList}
<h2 id="runs">Runs</h2>${filters(ctx, c.name, runs.filter)}${runsTable(ctx, runs.runs, () => c.repo, { pipelineColumn: false })}${pager(`/pipelines/${c.name}`, runs.filter, runs.next)}
<h2 id="history">Deployment history</h2>${history(ctx, s, entries)}
<h2 id="config">Configuration</h2><details><summary>Effective configuration (secrets masked)</summary><pre class="cfg">${configYaml(c)}</pre></details>`;
}
