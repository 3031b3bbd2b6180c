import type { AuditFilter, AuditView } from '../../store/audit-store.ts';
import { html, type SafeHtml } from '../html.ts';
import { ago, status, type ViewContext } from './layout.ts';

/** A target links to its page: run ids look like r…, anything else is a pipeline. */
function target(t: string | null): SafeHtml {
  if (!t) return html`<span class="muted">—</span>`;
  return /^r[a-z0-9]{8,30}$/.test(t) ? html`<a class="mono" href="/runs/${t}">${t.slice(-8)}</a>` : html`<a href="/pipelines/${t}">${t}</a>`;
}

export function auditBody(_ctx: ViewContext, entries: AuditView[], next: number | null, filter: AuditFilter & { before?: number | undefined }, facets: { actors: string[]; actions: string[] }): SafeHtml {
  const opt = (v: string, cur: string | undefined) => html`<option value="${v}"${v === (cur ?? '') ? html` selected` : ''}>${v || 'any'}</option>`;
  const q = (extra: Record<string, string | number | undefined>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ actor: filter.actor, action: filter.action, target: filter.target, result: filter.result, ...extra })) if (v !== undefined && v !== '') p.set(k, String(v));
    const s = p.toString();
    return `/audit${s ? `?${s}` : ''}`;
  };
  return html`<h1>Audit trail</h1>
<p class="muted">Who did what, when and from where: every action, sign-in and sign-out, refused attempts, and the use of tokens. Also <a href="/api/audit">GET /api/audit</a>.</p>
<form class="filters" method="get" action="/audit">
<label>Actor <select name="actor">${['', ...facets.actors].map((a) => opt(a, filter.actor))}</select></label>
<label>Action <select name="action">${['', ...facets.actions].map((a) => opt(a, filter.action))}</select></label>
<label>Target <input name="target" value="${filter.target ?? ''}" size="14" placeholder="pipeline or run"></label>
<label>Result <select name="result">${['', 'ok', 'refused', 'failed'].map((r) => opt(r, filter.result))}</select></label>
<button type="submit">Filter</button>${filter.actor || filter.action || filter.target || filter.result ? html` <a href="/audit">Clear</a>` : ''}</form>
${entries.length === 0
  ? html`<p class="empty">Nothing recorded${filter.actor || filter.action || filter.target || filter.result ? ' that matches' : ' yet'}.</p>`
  : html`<div class="tw"><table><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Target</th><th>Result</th><th class="hide-narrow">Detail</th><th class="hide-narrow">From</th></tr></thead><tbody>
${entries.map((e) => html`<tr><td>${ago(e.at)}</td><td>${e.actor}<div class="small muted">${e.role ?? ''}${e.role ? ' · ' : ''}${e.via}</div></td><td>${e.action}</td><td>${target(e.target)}</td><td>${status(e.result)}</td><td class="hide-narrow small subj">${e.detail ?? ''}</td><td class="hide-narrow mono small">${e.address ?? ''}</td></tr>`)}
</tbody></table></div>`}
${next || filter.before ? html`<nav class="pager" aria-label="Audit pages">${filter.before ? html`<a href="${q({})}">← Newest</a>` : ''}${next ? html`<a href="${q({ before: next })}">Older →</a>` : ''}</nav>` : ''}`;
}
