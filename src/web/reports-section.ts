import type { IntegrationFields } from '../report/view.ts';
import { html, type SafeHtml } from './html.ts';
import { ago, notice } from './views/layout.ts';

/** Delivery status → the console's status colours (sent green, pending amber, refused/failed red). */
const CLASS: Record<string, string> = { sent: 'st-ok', pending: 'st-pending', refused: 'st-refused', failed: 'st-failed', skipped: 'st-skipped' };

function delivery(status: string): SafeHtml {
  return html`<span class="st ${CLASS[status] ?? 'st-skipped'}">${status}</span>`;
}

/** Every attempt, oldest first: the HTTP status (failures in red), hover for time, duration and error. */
function attempts(list: { at: string; status: number | null; error: string | null; ms: number }[]): SafeHtml {
  if (list.length === 0) return html`<span class="muted">—</span>`;
  return html`${list.map((a, i) => {
    const ok = a.status !== null && a.status < 300;
    const title = `${a.at} · ${a.ms} ms${a.error ? ` · ${a.error}` : ''}`;
    return html`${i > 0 ? ' → ' : ''}<code class="mono${ok ? '' : ' att-bad'}" title="${title}">${a.status === null ? 'no answer' : a.status}</code>`;
  })}`;
}

/**
 * The pipeline page's "Reporting" section: warnings an operator must act on (e.g.
 * GitHub refusing our credentials), then the newest GitHub requests and notifications,
 * each with every attempt's response code. Built with the escaping template.
 */
export function reportsSection(fields: IntegrationFields | undefined): SafeHtml | '' {
  if (!fields) return '';
  const { warnings, reports, notifications } = fields;
  if (warnings.length === 0 && reports.github.length === 0 && notifications.length === 0) return '';
  const runLink = (id: string | null) => (id ? html`<a class="mono" href="/runs/${id}" title="${id}">${id.slice(-8)}</a>` : html`<span class="muted">—</span>`);
  return html`<h2 id="reporting">Reporting</h2>
${warnings.map((w) => notice('bad', html`<strong>${w.source}:</strong> ${w.message} ${ago(w.at)}`))}
${reports.github.length
    ? html`<h3>GitHub</h3><div class="tw"><table><thead><tr><th>Run</th><th>Request</th><th>State</th><th>Delivery</th><th>Attempts (HTTP status)</th></tr></thead><tbody>${reports.github.map(
        (g) => html`<tr><td>${runLink(g.run)}</td><td>${g.kind.replace('_', ' ')}</td><td>${g.state}</td><td>${delivery(g.status)}</td><td>${attempts(g.attempts)}</td></tr>`,
      )}</tbody></table></div>`
    : ''}
${notifications.length
    ? html`<h3>Notifications</h3><div class="tw"><table><thead><tr><th>Run</th><th>Event</th><th>Receiver</th><th>Delivery</th><th>Attempts (HTTP status)</th></tr></thead><tbody>${notifications.map(
        (n) => html`<tr><td>${runLink(n.run)}</td><td>${n.event.replace('_', ' ')}</td><td>${n.receiver}</td><td>${delivery(n.status)}</td><td>${attempts(n.attempts)}</td></tr>`,
      )}</tbody></table></div>`
    : ''}`;
}
