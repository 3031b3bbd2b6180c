/** Escapes text for HTML element content and attribute values. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · deployer</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#1b1f24;color:#fff;padding:.6rem 1rem}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1100px;margin:1rem auto;padding:0 1rem}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
.s{font-weight:600;padding:.1rem .4rem;border-radius:3px;color:#fff;background:#6e7781}
.s-succeeded{background:#1a7f37}.s-failed{background:#cf222e}.s-running{background:#0969da}.s-queued,.s-pending{background:#9a6700}
.s-cancelled,.s-superseded,.s-skipped{background:#6e7781}
pre.log{background:#0d1117;color:#e6edf3;padding:.75rem;overflow:auto;max-height:70vh;font-size:12px}
code{font-size:12px}button{cursor:pointer}
</style></head><body><header><a href="/">deployer</a></header><main>${body}</main></body></html>`;
}

export function badge(status: string): string {
  return `<span class="s s-${esc(status)}">${esc(status)}</span>`;
}

export function short(sha: string | null | undefined): string {
  return sha ? esc(sha.slice(0, 12)) : '—';
}
