import { isTerminal } from '../../pipeline/states.ts';
import type { RunView } from '../../store/run-store.ts';
import { html, type SafeHtml } from '../html.ts';
import { actionForm, ago, can, commitLink, status, took, triggeredBy, type ViewContext } from './layout.ts';

export interface RunPageData {
  run: RunView;
  repo: string;
  /** The pipeline is paused and this run waits for it. */
  held: boolean;
  log: { html: SafeHtml; firstLine: number; shownLines: number; totalLines: number; lastSeq: number };
}

/** Everything above the log: replaced in place while the run is live. */
export function runHead(ctx: ViewContext, d: RunPageData): SafeHtml {
  const r = d.run;
  const active = !isTerminal(r.status);
  const op = can(ctx, 'operator');
  const deploying = r.stages.some((s) => s.name === 'deploy' && s.status === 'running');
  const actions = op
    ? html`<div class="actions">${active && !deploying ? actionForm(ctx, `/api/runs/${r.id}/cancel`, 'Cancel', { cls: 'danger', label: 'Cancel this run' }) : ''}${d.held ? actionForm(ctx, `/api/runs/${r.id}/start`, 'Start now', { cls: 'primary' }) : ''}${actionForm(ctx, `/api/pipelines/${r.pipeline}/rebuild`, 'Rebuild')}</div>`
    : '';
  return html`<div id="runhead">
<h1>Run <span class="mono">${r.id}</span> <span id="run-status">${status(d.held ? 'held' : r.status)}</span></h1>
<dl class="kv"><dt>Pipeline</dt><dd><a href="/pipelines/${r.pipeline}">${r.pipeline}</a></dd>
<dt>Commit</dt><dd>${commitLink(ctx, d.repo, r.commit)} ${r.subject ?? ''}${r.author ? html` <span class="muted">— ${r.author}</span>` : ''}</dd>
<dt>Trigger</dt><dd>${triggeredBy(r)}${r.targetImage ? html` <span class="muted">(redeploys</span> <code>${r.targetImage}</code><span class="muted">)</span>` : ''}</dd>
<dt>Created</dt><dd>${ago(r.createdAt)}${r.startedAt ? html`, started ${ago(r.startedAt)}` : ''}${r.finishedAt ? html`, took ${took(r.startedAt ?? r.createdAt, r.finishedAt)}` : ''}</dd>
${r.image ? html`<dt>Image</dt><dd class="mono small">${r.image.ref}</dd>` : ''}
${r.follows ? html`<dt>Follows</dt><dd><a href="/runs/${r.follows}">${r.follows}</a> <span class="muted small">(it failed; onFailure: previous-good-push deploys this newest superseded push)</span></dd>` : ''}
${r.followedBy ? html`<dt>Followed by</dt><dd><a href="/runs/${r.followedBy}">${r.followedBy}</a> <span class="muted small">(onFailure: previous-good-push: the newest push this run had superseded)</span></dd>` : ''}
${r.supersededBy ? html`<dt>Superseded by</dt><dd><a href="/runs/${r.supersededBy}">${r.supersededBy}</a></dd>` : ''}
${r.worker ? html`<dt>Worker</dt><dd class="small">${r.worker}${r.attempts > 1 ? html` (attempt ${r.attempts})` : ''}</dd>` : ''}</dl>
${r.error ? html`<div class="notice bad"><strong>Error:</strong> ${r.error}</div>` : ''}
${d.held ? html`<div class="notice warn">This push waits: the pipeline is paused. Start it now, or resume the pipeline.</div>` : ''}
${actions}
<ol class="timeline" aria-label="Stages">${r.stages.map((s) => html`<li id="stage-${s.name}"><b>${s.name}</b>${status(s.status)} <span class="muted small">${took(s.startedAt, s.finishedAt)}</span>${s.error ? html`<div class="err">${s.error}</div>` : ''}</li>`)}</ol>
${checks(r)}
${r.deploys.length ? html`<h2>Services</h2><div class="tw"><table><thead><tr><th>Service</th><th>Outcome</th><th class="hide-narrow">Serving at the end</th><th>What happened</th></tr></thead><tbody>${r.deploys.map((x) => html`<tr><td>${x.service}</td><td>${status(x.outcome)}</td><td class="mono small hide-narrow">${x.image ?? ''}</td><td>${x.message}${x.taskErrors.length ? html`<div class="small muted">${x.taskErrors.join('; ')}</div>` : ''}</td></tr>`)}</tbody></table></div>` : ''}
</div>`;
}

/** deploy.verify and deploy.probe: what users got during and after the rollout. */
function checks(r: RunView): SafeHtml {
  if (!r.verify && !r.probe && !r.verifyPrevious) return html``;
  const edge = (v: NonNullable<RunView['verify']>, ok: string, bad: string) =>
    html`<div class="card check"><h3>${status(v.ok ? 'ok' : 'failed')} ${v.ok ? ok : bad}</h3><p class="small">${v.detail}</p><p class="small muted mono">${v.url}</p></div>`;
  const p = r.probe;
  const fig = (label: string, value: string | number, bad = false) => html`<div${bad ? html` class="bad"` : ''}><b>${value}</b><span class="small muted">${label}</span></div>`;
  return html`<h2>What users got</h2><div class="checks">
${r.verify ? edge(r.verify, 'Verified at the edge', 'Not verified at the edge') : ''}
${r.verifyPrevious ? edge(r.verifyPrevious, 'Previous revision back at the edge', 'Previous revision NOT back at the edge') : ''}
${p ? html`<div class="card check"><h3>${p.failed > 0 ? status('failed') : status('ok')} Probe during the rollout</h3><div class="figures">${fig('requests sent', p.sent)}${fig('failed', p.failed, p.failed > 0)}${fig('p50', `${p.p50Ms} ms`)}${fig('p99', `${p.p99Ms} ms`)}${fig('longest gap', `${p.longestGapMs} ms`)}${fig('measured', `${(p.durationMs / 1000).toFixed(1)} s`)}</div>${p.failures.length ? html`<p class="small muted">First failures: ${p.failures.slice(0, 5).map((f) => `${f.what} at +${(f.atMs / 1000).toFixed(1)} s`).join(', ')}</p>` : ''}<p class="small muted mono">${p.url}</p></div>` : ''}
</div>`;
}

export function runBody(ctx: ViewContext, d: RunPageData): SafeHtml {
  const r = d.run;
  const live = !isTerminal(r.status);
  const cut = d.log.totalLines > d.log.shownLines;
  return html`${runHead(ctx, d)}
<h2 id="log-h">Log</h2>
<div class="logbar">${cut ? html`<span class="muted small">Showing the last ${d.log.shownLines} of ${d.log.totalLines} lines.</span>` : ''}
<a class="button" href="/api/runs/${r.id}/log">Raw</a><a class="button" href="/api/runs/${r.id}/log?download=1" download>Download</a>
<button type="button" data-log="expand" hidden>Expand all</button><button type="button" data-log="collapse" hidden>Collapse all</button>
${live ? html`<label hidden data-log="follow-label"><input type="checkbox" data-log="follow" checked> Follow</label>` : ''}</div>
<div id="log" class="log" role="log" aria-labelledby="log-h" data-run="${r.id}" data-after="${d.log.lastSeq}" data-next-line="${d.log.firstLine + d.log.shownLines}"${live ? html` data-live="1"` : ''}>${d.log.shownLines ? d.log.html : html`<p class="empty" data-empty>${live ? 'No output yet.' : 'No output.'}</p>`}</div>`;
}
