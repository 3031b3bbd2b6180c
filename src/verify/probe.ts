import type { ProbeSettings } from '../config/verify.ts';
import type { ProbeResult } from '../pipeline/ports.ts';
import { describeFetchError, realClock, type Clock, type Fetch } from './http.ts';

export type { ProbeResult };

/** One request: sent and answered on the probe's clock (ms since its start). */
export interface ProbeSample {
  sentAtMs: number;
  doneAtMs: number;
  ok: boolean;
  what?: string;
}

export interface Probe {
  /** Stops sending, waits for the answers in flight (at most the request timeout) and sums up. */
  stop(): Promise<ProbeResult>;
  /** Counts so far. */
  snapshot(): { sent: number; failed: number };
}

const KEPT_FAILURES = 10;

/**
 * Sends GET `url` at `rate` per second on a fixed schedule (open loop: a slow answer
 * never delays the next request, so an outage shows as failures and a gap rather than
 * as fewer requests), from now until `stop()`.
 */
export function startProbe(opts: { settings: ProbeSettings; fetch?: Fetch; clock?: Clock }): Probe {
  const { settings } = opts;
  const fetchFn = opts.fetch ?? fetch;
  const clock = opts.clock ?? realClock;
  const periodMs = 1000 / settings.ratePerSecond;
  const started = clock.now();
  const samples: ProbeSample[] = [];
  const inFlight = new Set<Promise<void>>();
  const stopping = new AbortController();
  let failed = 0;
  let sent = 0;

  const one = async (): Promise<void> => {
    const sentAtMs = clock.now() - started;
    sent++;
    try {
      const res = await fetchFn(settings.url, {
        headers: { 'cache-control': 'no-cache', 'user-agent': 'deployer-probe' },
        signal: AbortSignal.timeout(settings.requestTimeoutMs),
      });
      await res.arrayBuffer();
      const ok = res.status < 500;
      samples.push({ sentAtMs, doneAtMs: clock.now() - started, ok, ...(ok ? {} : { what: `status ${res.status}` }) });
      if (!ok) failed++;
    } catch (err) {
      failed++;
      samples.push({ sentAtMs, doneAtMs: clock.now() - started, ok: false, what: describeFetchError(err, settings.requestTimeoutMs) });
    }
  };

  const loop = (async () => {
    for (let i = 0; !stopping.signal.aborted; i++) {
      const due = started + i * periodMs;
      const wait = due - clock.now();
      if (wait > 0) await clock.sleep(wait, stopping.signal);
      if (stopping.signal.aborted) break;
      const p = one().finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  })();

  return {
    async stop() {
      const endedAtMs = clock.now() - started;
      stopping.abort();
      await loop;
      await Promise.allSettled(inFlight);
      return { ...summariseProbe(settings.url, samples, endedAtMs), startedAt: new Date(started).toISOString() };
    },
    snapshot: () => ({ sent, failed }),
  };
}

/** The numbers a run records, from the samples of one probe that ran until `endedAtMs`. */
export function summariseProbe(url: string, samples: ProbeSample[], endedAtMs: number): Omit<ProbeResult, 'startedAt'> {
  const good = samples.filter((s) => s.ok);
  const latencies = good.map((s) => s.doneAtMs - s.sentAtMs).sort((a, b) => a - b);
  const arrivals = good.map((s) => Math.min(s.doneAtMs, endedAtMs)).sort((a, b) => a - b);
  let longestGapMs = 0;
  let prev = 0;
  for (const t of [...arrivals, endedAtMs]) {
    longestGapMs = Math.max(longestGapMs, t - prev);
    prev = t;
  }
  const failures = samples
    .filter((s) => !s.ok)
    .sort((a, b) => a.sentAtMs - b.sentAtMs)
    .slice(0, KEPT_FAILURES)
    .map((s) => ({ atMs: Math.round(s.sentAtMs), what: s.what ?? 'failed' }));
  return {
    url,
    sent: samples.length,
    failed: samples.length - good.length,
    p50Ms: round1(percentile(latencies, 0.5)),
    p99Ms: round1(percentile(latencies, 0.99)),
    longestGapMs: Math.round(longestGapMs),
    durationMs: Math.round(endedAtMs),
    failures,
  };
}

/** Nearest-rank percentile of sorted values (0 for none). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[rank - 1]!;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

/** One line for the run log. */
export function describeProbe(r: ProbeResult): string {
  const base = `probe ${r.url}: ${r.sent} sent, ${r.failed} failed, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, longest gap ${r.longestGapMs} ms over ${(r.durationMs / 1000).toFixed(1)} s`;
  if (r.failures.length === 0) return base;
  return `${base}; first failures: ${r.failures.slice(0, 3).map((f) => `${f.what} at +${(f.atMs / 1000).toFixed(1)}s`).join(', ')}`;
}

/**
 * Whether the probe's failures must roll the deploy back (`deploy.probe.maxFailed`):
 * undefined when they are only recorded, else the reason.
 */
export function probeFailure(r: Pick<ProbeResult, 'failed' | 'sent' | 'longestGapMs'>, maxFailed: number | undefined): string | undefined {
  if (maxFailed === undefined || r.failed <= maxFailed) return undefined;
  return `the probe saw ${r.failed} of ${r.sent} requests fail during the rollout (at most ${maxFailed} allowed; longest gap ${r.longestGapMs} ms)`;
}
