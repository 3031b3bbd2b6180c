/**
 * What edge verification and the probe need from the outside world: an HTTP client
 * (the platform's fetch, or a test's own) and a clock. Injected so the judging and
 * statistics can be tested with exact timings, while the real-engine tests use the
 * real ones against Caddy.
 */
export type Fetch = (input: string | URL, init?: RequestInit) => Promise<Response>;

export interface Clock {
  /** Milliseconds, monotonic enough for durations. */
  now(): number;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted || ms <= 0) return resolve();
      const onAbort = () => (clearTimeout(timer), resolve());
      const timer = setTimeout(() => (signal?.removeEventListener('abort', onAbort), resolve()), ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/** How an answer failed to arrive, in a few words ("connection refused", "no answer within 5s"). */
export function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${formatMs(timeoutMs)}`;
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code) return `connection failed (${code})`;
  return (e?.cause?.message ?? e?.message ?? String(err)).slice(0, 200);
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}
