/**
 * Server-sent events, both ends. The server side only formats frames; the parser is
 * for our own clients (tests, benchmarks, the CLI) so they read the stream the way a
 * browser's EventSource does.
 */

export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/** One frame. Data may span lines: each line gets its own `data:` field. */
export function sseFrame(event: string, data: string, id?: string | number): string {
  let frame = `event: ${event}\n`;
  if (id !== undefined) frame += `id: ${id}\n`;
  for (const line of data.split('\n')) frame += `data: ${line}\n`;
  return `${frame}\n`;
}

/** A comment line: keeps proxies and load balancers from closing an idle stream. */
export const SSE_PING = ': ping\n\n';

/**
 * Incremental parser following the EventSource rules that matter here: frames end at a
 * blank line, `data` lines are joined with "\n", comments are dropped, the event type
 * defaults to "message".
 */
export class SseParser {
  #buffer = '';

  push(text: string): SseMessage[] {
    this.#buffer += text;
    const out: SseMessage[] = [];
    let m: RegExpExecArray | null;
    while ((m = /\r?\n\r?\n/.exec(this.#buffer))) {
      const block = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      let event = 'message';
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
      }
      if (data.length) out.push({ event, data: data.join('\n'), ...(id !== undefined ? { id } : {}) });
    }
    return out;
  }
}

/**
 * Reads an SSE response with fetch, yielding messages until the server ends the stream
 * or `signal` aborts.
 */
export async function* readSse(url: string, opts: { signal?: AbortSignal; headers?: Record<string, string> } = {}): AsyncGenerator<SseMessage> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...opts.headers }, ...(opts.signal ? { signal: opts.signal } : {}) });
  if (!res.ok || !res.body) throw new Error(`event stream ${url}: HTTP ${res.status} ${await res.text().catch(() => '')}`);
  const parser = new SseParser();
  const decoder = new TextDecoder();
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    for (const m of parser.push(decoder.decode(chunk, { stream: true }))) yield m;
  }
}
