import type { PipelineConfig } from '../../config/types.ts';
import type { RunSummary } from '../../store/run-queries.ts';
import { html, type SafeHtml } from '../html.ts';
import { actionForm, ago, can, commitLink, shortSha, status, took, triggeredBy, type ViewContext } from './layout.ts';

export interface PipelineSummary {
  config: PipelineConfig;
  paused: { reason: string; by: string; at: string } | null;
  drift: { service: string; recorded: string; actual: string | null }[] | null;
  deployed: { commit: string; digest: string; at: string; run: string } | null;
  /** The run behind what serves (subject and author). */
  servingRun: RunSummary | undefined;
  /** Running, else the oldest waiting run. */
  current: RunSummary | undefined;
  /** How many of the last finished runs failed in a row. */
  failing: number;
  /** The current run is a push waiting on the pause. */
  held?: boolean;
}

/** The pipeline's badges: paused, drift, failing. */
export function badges(p: Pick<PipelineSummary, 'paused' | 'drift' | 'failing'>): SafeHtml {
  return html`${p.paused ? html`<span class="badge badge-paused" title="${p.paused.reason}">‖ paused</span>` : ''}${p.drift?.length ? html`<span class="badge badge-drift">⚠ drift</span>` : ''}${p.failing > 0 ? html`<span class="badge badge-failing">✗ failing${p.failing > 1 ? html` ×${p.failing}` : ''}</span>` : ''}`;
}

/** Four segments, one per stage, each by text as well as colour. */
export function stageStrip(run: RunSummary): SafeHtml {
  return html`<div class="strip" aria-label="stages">${run.stages.map((s) => html`<span class="s-${s.status}" title="${s.name}: ${s.status}${s.error ? ` (${s.error})` : ''}">${s.name}<span class="sr"> ${s.status}</span>${s.status === 'running' ? ' …' : s.status === 'succeeded' ? ' ✓' : s.status === 'failed' ? ' ✗' : ''}</span>`)}</div>`;
}

function card(ctx: ViewContext, p: PipelineSummary): SafeHtml {
  const c = p.config;
  const serving = p.deployed
    ? html`<dl class="kv"><dt>Serving</dt><dd>${commitLink(ctx, c.repo, p.deployed.commit)} ${p.servingRun?.subject ?? ''}</dd>
<dt>By</dt><dd>${p.servingRun?.author ?? '—'}, deployed ${ago(p.deployed.at)}</dd>
<dt>Digest</dt><dd class="mono" title="${p.deployed.digest}">${p.deployed.digest.slice(0, 19)}</dd></dl>`
    : html`<p class="muted">Nothing deployed yet.</p>`;
  const cur = p.current
    ? html`<div><a href="/runs/${p.current.id}">${status(p.held ? 'held' : p.current.status)}</a> ${commitLink(ctx, c.repo, p.current.commit)} <span class="muted">${triggeredBy(p.current)} · ${p.current.startedAt ? took(p.current.startedAt, null) : ago(p.current.createdAt)}</span>${stageStrip(p.current)}</div>`
    : '';
  const drift = p.drift?.length
    ? html`<p class="small">${p.drift.map((d) => html`<strong>drift:</strong> ${d.service} runs <code>${d.actual ?? '(service gone)'}</code>, not the deployed <code>${d.recorded}</code><br>`)}</p>`
    : '';
  return html`<section class="card" aria-labelledby="p-${c.name}"><h2 id="p-${c.name}"><a href="/pipelines/${c.name}">${c.name}</a> ${badges(p)}</h2>
<div class="muted small"><span class="mono">${c.repo}@${c.branch}</span> → ${c.services.join(', ') || 'no services'}</div>
${serving}${cur}${p.paused ? html`<p class="small"><strong>Paused</strong> by ${p.paused.by}: ${p.paused.reason}</p>` : ''}${drift}
${can(ctx, 'operator') ? html`<div class="actions">${actionForm(ctx, `/api/pipelines/${c.name}/rebuild`, 'Rebuild', { label: `Rebuild ${c.name}` })}</div>` : ''}</section>`;
}

export function runsTable(ctx: ViewContext, runs: RunSummary[], repoOf: (pipeline: string) => string, opts: { pipelineColumn: boolean }): SafeHtml {
  if (runs.length === 0) return html`<p class="empty">No runs.</p>`;
  return html`<div class="tw"><table><thead><tr><th>Status</th><th>Run</th>${opts.pipelineColumn ? html`<th>Pipeline</th>` : ''}<th>Commit</th><th class="hide-narrow">Trigger</th><th class="hide-narrow">Took</th><th>Created</th></tr></thead><tbody>
${runs.map(
  (r) => html`<tr><td>${status(r.status)}</td><td><a href="/runs/${r.id}" class="mono">${r.id.slice(-8)}</a></td>${opts.pipelineColumn ? html`<td><a href="/pipelines/${r.pipeline}">${r.pipeline}</a></td>` : ''}<td class="subj">${commitLink(ctx, repoOf(r.pipeline), r.commit)} ${r.subject ?? ''}${r.error ? html`<div class="small muted">${r.error}</div>` : ''}</td><td class="hide-narrow">${triggeredBy(r)}</td><td class="hide-narrow">${took(r.startedAt, r.finishedAt)}</td><td>${ago(r.createdAt)}</td></tr>`,
)}</tbody></table></div>`;
}

export function overviewBody(ctx: ViewContext, pipelines: PipelineSummary[], latest: RunSummary[], repoOf: (pipeline: string) => string): SafeHtml {
  return html`<h1>Pipelines</h1>
<div class="grid">${pipelines.map((p) => card(ctx, p))}</div>
<h2>Latest runs</h2>${runsTable(ctx, latest, repoOf, { pipelineColumn: true })}
<p><a href="/runs">All runs →</a></p>`;
}

export { shortSha };
