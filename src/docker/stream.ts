import type { Readable } from 'node:stream';

/** One JSON message of a build or push response. */
export interface ProgressEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  aux?: Record<string, unknown>;
  error?: string;
  errorDetail?: { message?: string; code?: number };
}

/**
 * Reads a Docker JSON-lines response to its end. The daemon reports a failing RUN or
 * a push denied by the registry as HTTP 200 followed by an `error` message, so the
 * stream's own success means nothing: the first in-band error rejects.
 */
export function followJsonStream(stream: Readable, onEvent: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<ProgressEvent[]> {
  return new Promise((resolve, reject) => {
    const events: ProgressEvent[] = [];
    let buffered = '';
    let failure: Error | undefined;
    const handleLine = (line: string) => {
      if (line.trim() === '') return;
      let event: ProgressEvent;
      try {
        event = JSON.parse(line) as ProgressEvent;
      } catch {
        event = { stream: line };
      }
      if (event.aux) events.push(event);
      if ((event.error || event.errorDetail) && !failure) {
        failure = new Error(event.errorDetail?.message ?? event.error ?? 'unknown error');
      }
      onEvent(event);
    };
    const onAbort = () => {
      stream.destroy();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        handleLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    stream.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    stream.on('end', () => {
      signal?.removeEventListener('abort', onAbort);
      handleLine(buffered);
      if (failure) reject(failure);
      else resolve(events);
    });
  });
}

/** Splits the text of `stream` messages into lines, dropping the trailing newline. */
export function streamLines(text: string): string[] {
  return text.replace(/\r?\n$/, '').split(/\r?\n/);
}
