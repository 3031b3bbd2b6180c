import type { IntegrationFields } from '../report/view.ts';
import { esc } from './html.ts';

/** Delivery status → the page's badge colours (sent green, pending amber, refused/failed red). */
const BADGE: Record<string, string> = { sent: 'succeeded', pending: 'queued', refused: 'failed', failed: 'failed', skipped: 'skipped' };

function badge(status: string): string {
  return `<span class="s s-${esc(BADGE[status] ?? status)}">${esc(status)}</span>`;
}

function attempts(list: { at: string; status: number | null; error: string | null; ms: number }[]): string {
  if (list.length === 0) return '—';
  // Oldest first, → between; failures in red; hover: when, how long, the error.
  return list
    .map((a) => {
      const ok = a.status !== null && a.status < 300;
      return `<code title="${esc(`${a.at} · ${a.ms} ms${a.error ? ` · ${a.error}` : ''}`)}"${ok ? '' : ' style="color:#cf222e"'}>${a.status === null ? 'no answer' : esc(a.status)}</code>`;
    })
    .join(' → ');
}

/**
 * The pipeline page's "Reporting" section: warnings an operator must act on, then the
 * newest GitHub requests and notifications, each with every attempt's response code
 * (hover for time, duration and error). Everything is escaped.
 */
export function reportsSection(fields: IntegrationFields | undefined): string {
  if (!fields) return '';
  const { warnings, reports, notifications } = fields;
  if (warnings.length === 0 && reports.github.length === 0 && notifications.length === 0) return '';
  const warn = warnings
    .map((w) => `<p role="alert" style="border-left:4px solid #cf222e;padding:.4rem .75rem"><strong>Warning (${esc(w.source)}):</strong> ${esc(w.message)} <small>${esc(w.at)}</small></p>`)
    .join('');
  const gh = reports.github.length
    ? `<h3>GitHub</h3><div style="overflow-x:auto"><table><tr><th>Run</th><th>Request</th><th>State</th><th>Delivery</th><th>Attempts (HTTP status)</th></tr>${reports.github
        .map((g) => `<tr><td><a href="/runs/${esc(g.run)}">${esc(g.run)}</a></td><td>${esc(g.kind.replace('_', ' '))}</td><td>${esc(g.state)}</td><td>${badge(g.status)}</td><td>${attempts(g.attempts)}</td></tr>`)
        .join('')}</table></div>`
    : '';
  const notes = notifications.length
    ? `<h3>Notifications</h3><div style="overflow-x:auto"><table><tr><th>Run</th><th>Event</th><th>Receiver</th><th>Delivery</th><th>Attempts (HTTP status)</th></tr>${notifications
        .map((n) => `<tr><td>${n.run ? `<a href="/runs/${esc(n.run)}">${esc(n.run)}</a>` : '—'}</td><td>${esc(n.event)}</td><td>${esc(n.receiver)}</td><td>${badge(n.status)}</td><td>${attempts(n.attempts)}</td></tr>`)
        .join('')}</table></div>`
    : '';
  return `<section id="reporting"><h2>Reporting</h2>${warn}${gh}${notes}</section>`;
}
