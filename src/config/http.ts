import { parseDuration } from '../lib/duration.ts';
import type { ConfigIssue } from './load.ts';
import type { Config } from './types.ts';

/**
 * `http:` — how long a client may take to send its request. A client slower than this
 * is answered 408 and disconnected, so dribbling senders cannot hold connections and
 * buffers. GitHub itself gives up on a delivery after 10 s, so the defaults leave room.
 */
export const DEFAULT_HTTP = { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 } as const;

export function httpSettings(h: { requestTimeout?: string | number; headersTimeout?: string | number } | undefined, issues: ConfigIssue[]): Config['http'] {
  const read = (value: string | number | undefined, fallback: number, path: string) => {
    if (value === undefined) return fallback;
    const ms = parseDuration(value);
    if (ms === undefined || ms < 100) {
      issues.push({ path, message: `"${value}" is not a duration of at least 100ms (e.g. 30s)` });
      return fallback;
    }
    return ms;
  };
  const requestTimeoutMs = read(h?.requestTimeout, DEFAULT_HTTP.requestTimeoutMs, 'http.requestTimeout');
  const headersTimeoutMs = read(h?.headersTimeout, Math.min(DEFAULT_HTTP.headersTimeoutMs, requestTimeoutMs), 'http.headersTimeout');
  // Node refuses a headers timeout longer than the request timeout (the headers are part of it).
  if (headersTimeoutMs > requestTimeoutMs) issues.push({ path: 'http.headersTimeout', message: 'must not be longer than http.requestTimeout' });
  return { requestTimeoutMs, headersTimeoutMs };
}
