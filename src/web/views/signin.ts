import { html, type SafeHtml } from '../html.ts';
import { notice, type ViewContext } from './layout.ts';

export interface SignInOptions {
  providers: { id: string; label: string }[];
  /** Where to go after signing in (a path on this site). */
  next: string;
  error?: string | undefined;
  info?: string | undefined;
}

export function signInBody(ctx: ViewContext, o: SignInOptions): SafeHtml {
  const q = o.next && o.next !== '/' ? `?next=${encodeURIComponent(o.next)}` : '';
  return html`<div class="signin"><h1>Sign in to deployer</h1>
${o.error ? notice('bad', o.error) : ''}${o.info ? notice('ok', o.info) : ''}
<div class="card">
${o.providers.map((p) => html`<a class="button idp" href="/auth/${p.id}${q}">Sign in with ${p.label}</a>`)}
${o.providers.length ? html`<div class="or">or with a token</div>` : ''}
<form method="post" action="/auth/token"><input type="hidden" name="_csrf" value="${ctx.csrf}"><input type="hidden" name="next" value="${o.next}">
<label for="token">Token <span class="muted small">(the admin token or a named one)</span></label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit" class="primary">Sign in</button></form></div></div>`;
}
