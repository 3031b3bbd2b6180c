import { roleAtLeast, type Role } from '../../config/auth.ts';
import { formatDuration } from '../../lib/duration.ts';
import type { Actor } from '../auth/actor.ts';
import { html, type SafeHtml } from '../html.ts';

/** What every page needs to know about the request it answers. */
export interface ViewContext {
  actor: Actor | undefined;
  /** CSRF token for this response's forms (bound to the session). */
  csrf: string;
  /** This response's CSP nonce for <script> elements. */
  nonce: string;
  /** Asset URLs with a version, e.g. /assets/app.css?v=… */
  assets: { css: string; js: string };
  /** Base of links to commits: https://github.com (or the configured GitHub web URL). */
  githubWeb: string;
  /** The path asked for (for the current nav item). */
  path: string;
}

export function can(ctx: ViewContext, role: Role): boolean {
  return ctx.actor !== undefined && ctx.actor.via !== 'anonymous' && roleAtLeast(ctx.actor.role, role);
}

/** A form that POSTs to `action` with this response's CSRF token: every action works without script. */
export function actionForm(ctx: ViewContext, action: string, button: SafeHtml | string, opts: { fields?: SafeHtml; cls?: string; label?: string } = {}): SafeHtml {
  return html`<form method="post" action="${action}"><input type="hidden" name="_csrf" value="${ctx.csrf}">${opts.fields ?? ''}<button type="submit" class="${opts.cls ?? ''}"${opts.label ? html` aria-label="${opts.label}"` : ''}>${button}</button></form>`;
}

const NAV: [string, string][] = [
  ['/', 'Pipelines'],
  ['/runs', 'Runs'],
  ['/audit', 'Audit'],
];

export function layout(ctx: ViewContext, title: string, body: SafeHtml, opts: { live?: string } = {}): string {
  const a = ctx.actor;
  const current = (href: string) => (href === '/' ? ctx.path === '/' || ctx.path.startsWith('/pipelines') : ctx.path.startsWith(href));
  const who = !a
    ? ''
    : a.via === 'anonymous'
      ? html`<div class="who"><span>read-only</span><a class="button" href="/signin">Sign in</a></div>`
      : html`<div class="who"><span title="${a.via}">${a.name} · ${a.role}</span>${a.via.startsWith('session:') ? html`<form method="post" action="/auth/logout"><input type="hidden" name="_csrf" value="${ctx.csrf}"><button type="submit">Sign out</button></form>` : ''}</div>`;
  const nav = a ? html`<nav aria-label="Main">${NAV.map(([href, label]) => html`<a href="${href}"${current(href) ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>` : '';
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · deployer</title><link rel="stylesheet" href="${ctx.assets.css}"><link rel="icon" href="data:,">
<script type="module" src="${ctx.assets.js}" nonce="${ctx.nonce}"></script>
</head><body${opts.live ? html` data-live="${opts.live}"` : ''}><a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">deployer</a>${nav}${who}</header>
<main id="main">${body}</main></body></html>`.value;
}

const ICONS: Record<string, string> = {
  succeeded: '✓',
  ok: '✓',
  failed: '✗',
  refused: '⊘',
  missing: '⊘',
  error: '✗',
  running: '◐',
  queued: '◷',
  pending: '○',
  held: '‖',
  cancelled: '⊘',
  superseded: '↷',
  skipped: '–',
  rolled_back: '↺',
  timed_out: '⧗',
};

/** A status by text and icon as well as colour. */
export function status(s: string): SafeHtml {
  return html`<span class="st st-${s.replace(/[^a-z_]/g, '')}"><span class="ic" aria-hidden="true">${ICONS[s] ?? '•'}</span>${s.replace('_', ' ')}</span>`;
}

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 7) : '—';
}

/** A commit, linked to GitHub. */
export function commitLink(ctx: ViewContext, repo: string, sha: string | null | undefined): SafeHtml {
  if (!sha) return html`<span class="muted">branch head</span>`;
  return html`<a class="mono" href="${ctx.githubWeb}/${repo}/commit/${sha}" title="${sha}">${shortSha(sha)}</a>`;
}

/** "3 min ago", with the exact time on hover (and for machines). */
export function ago(iso: string | null | undefined, now = Date.now()): SafeHtml {
  if (!iso) return html`<span class="muted">—</span>`;
  const t = Date.parse(iso);
  const s = Math.max(0, Math.round((now - t) / 1000));
  const text = s < 45 ? 'just now' : s < 90 ? '1 min ago' : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86_400 ? `${Math.round(s / 3600)} h ago` : s < 30 * 86_400 ? `${Math.round(s / 86_400)} d ago` : iso.slice(0, 10);
  return html`<time datetime="${iso}" title="${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}">${text}</time>`;
}

export function took(start: string | null | undefined, end: string | null | undefined, now = Date.now()): string {
  if (!start) return '';
  const ms = (end ? Date.parse(end) : now) - Date.parse(start);
  return ms >= 0 ? formatDuration(ms) : '';
}

/** Who asked for a run: "push by …", "rebuild by alice", "rollback by bob". */
export function triggeredBy(run: { trigger: string; requestedBy: string | null; author: string | null }): SafeHtml {
  const by = run.requestedBy ?? (run.trigger === 'push' ? run.author : null);
  return by ? html`${run.trigger} <span class="muted">by</span> ${by}` : html`${run.trigger}`;
}

export function notice(kind: 'ok' | 'bad' | 'warn', text: string | SafeHtml): SafeHtml {
  return html`<div class="notice ${kind}" role="${kind === 'bad' ? 'alert' : 'status'}">${text}</div>`;
}

/** Short messages after an action, named in the redirect (`?done=…`), so no text comes from the URL. */
export const DONE_MESSAGES: Record<string, string> = {
  paused: 'Paused: new pushes wait until the pipeline is resumed.',
  resumed: 'Resumed.',
  'up-to-date': 'Checked: the branch head has already run or is deployed.',
  cancelled: 'Cancelled.',
  cancelling: 'Cancelling: the worker stops the run within seconds.',
  'signed-out': 'Signed out.',
};
