import { html, type SafeHtml } from '../html.ts';
import { notice, type ViewContext } from './layout.ts';

/** A page that only says something went wrong (or was refused), with a way back. */
export function messageBody(_ctx: ViewContext, title: string, text: string, back?: { href: string; label: string }): SafeHtml {
  return html`<h1>${title}</h1>${notice('bad', text)}${back ? html`<p><a href="${back.href}">${back.label}</a></p>` : html`<p><a href="/">Back to the pipelines</a></p>`}`;
}
