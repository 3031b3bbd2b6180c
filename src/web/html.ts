/**
 * HTML built with a tagged template that escapes every interpolation, unless the value
 * is already-safe markup (a `SafeHtml`, made only by `html` itself or by `raw`). So
 * forgetting to escape cannot create a hole: data is text by default.
 *
 *   html`<td>${run.subject}</td>`            subject escaped
 *   html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>`   arrays joined, each part safe or escaped
 */
export class SafeHtml {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

type Part = SafeHtml | string | number | boolean | null | undefined | readonly Part[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for element content and (quoted) attribute values. */
export function esc(value: unknown): string {
  const s = String(value ?? '');
  // Most strings need nothing: skip the replace (and its allocation) for them.
  return /[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (c) => ESCAPES[c]!) : s;
}

function render(part: Part): string {
  if (part instanceof SafeHtml) return part.value;
  if (part === null || part === undefined || part === false) return '';
  if (Array.isArray(part)) {
    let out = '';
    for (const p of part as readonly Part[]) out += render(p);
    return out;
  }
  return esc(part);
}

export function html(strings: TemplateStringsArray, ...values: Part[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** Marks markup produced by code we trust (the ANSI renderer's escaped output) as safe. */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}
