import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** One JSON message of a build or push response. */
export interface ProgressEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  aux?: unknown;
  error?: string;
  errorDetail?: { message?: string; code?: number };
}

/**
 * Reads a Docker JSON-lines response to its end. The daemon reports a failing RUN or
 * a push denied by the registry as HTTP 200 followed by an `error` message, so the
 * stream's own success means nothing: the first in-band error rejects. Nothing is kept
 * once handed to `onEvent` (a BuildKit build sends one message per output line).
 */
export function followJsonStream(stream: Readable, onEvent: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let failure: Error | undefined;
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const handleLine = (line: string) => {
      if (line.trim() === '') return;
      let event: ProgressEvent;
      try {
        event = JSON.parse(line) as ProgressEvent;
      } catch {
        event = { stream: `${line}\n` };
      }
      if ((event.error || event.errorDetail) && !failure) {
        failure = new Error(event.errorDetail?.message ?? event.error ?? 'unknown error');
      }
      try {
        onEvent(event);
      } catch (err) {
        stream.destroy();
        settle(err);
      }
    };
    function onAbort() {
      stream.destroy();
      settle(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    }
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      let start = 0;
      let nl: number;
      while (!settled && (nl = buffered.indexOf('\n', start)) >= 0) {
        handleLine(buffered.slice(start, nl));
        start = nl + 1;
      }
      buffered = buffered.slice(start);
    });
    stream.on('error', (err) => settle(err));
    stream.on('end', () => {
      handleLine(buffered);
      settle(failure);
    });
  });
}

/** A line longer than this is cut into pieces: one unterminated write must not grow without bound. */
export const MAX_LINE_CHARS = 64 * 1024;

/**
 * Reassembles output lines from chunks cut anywhere (between stream messages, inside a
 * line, inside a UTF-8 character). A carriage return without a newline overwrites the
 * line as a terminal would, so progress bars keep only their last state.
 */
export class LineBuffer {
  #partial = '';
  #decoder: StringDecoder | undefined;

  /** Appends text; returns the lines it completed. */
  push(text: string): string[] {
    this.#partial += text;
    const out: string[] = [];
    let start = 0;
    let nl: number;
    while ((nl = this.#partial.indexOf('\n', start)) >= 0) {
      out.push(terminalLine(this.#partial.slice(start, nl)));
      start = nl + 1;
    }
    this.#partial = this.#partial.slice(start);
    while (this.#partial.length > MAX_LINE_CHARS) {
      out.push(this.#partial.slice(0, MAX_LINE_CHARS));
      this.#partial = this.#partial.slice(MAX_LINE_CHARS);
    }
    return out;
  }

  /** Appends raw bytes (a multi-byte character may be split between two calls). */
  pushBytes(bytes: Uint8Array): string[] {
    this.#decoder ??= new StringDecoder('utf8');
    return this.push(this.#decoder.write(bytes as Buffer));
  }

  /** The unterminated rest, if any, as a last line. */
  flush(): string | undefined {
    const rest = this.#partial + (this.#decoder?.end() ?? '');
    this.#partial = '';
    return rest === '' ? undefined : terminalLine(rest);
  }

  get pendingChars(): number {
    return this.#partial.length;
  }
}

function terminalLine(line: string): string {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  const cr = text.lastIndexOf('\r');
  if (cr < 0) return text;
  // "50%\r100%" shows as "100%"; "text\r" (CRLF handled above) keeps the text.
  const last = text.slice(cr + 1);
  return last === '' ? text.slice(0, cr) : last;
}
