import type { EdgeVerifySettings, ProbeSettings } from '../config/verify.ts';
import type { LineSink } from '../pipeline/events.ts';
import type { CheckedRollout, EdgeCheckPort } from '../pipeline/ports.ts';
import { verifyEdge, type EdgeVerifyResult } from './edge.ts';
import { realClock, type Clock, type Fetch } from './http.ts';
import { describeProbe, probeFailure, startProbe } from './probe.ts';

/**
 * The probe keeps running this long after the rollout converged: swarm reports an
 * update complete while a start-first update's old task is still being stopped, and a
 * task leaves service DNS 2 s before its stop signal (docs/docker-notes.md). An outage
 * at the old task's exit must still be counted.
 */
export const PROBE_TAIL_MS = 3_000;

export type RolloutChecks<T> = CheckedRollout<T>;

export interface RolloutCheckRequest<T> {
  probe: ProbeSettings | undefined;
  verify: EdgeVerifySettings | undefined;
  /** The full sha being deployed, and the one that served before (for "old revision"). */
  commit: string;
  previousCommit?: string | undefined;
  /** The rollout (every service); the checks run around it. */
  rollout: () => Promise<T>;
  /** Whether the rollout converged: only then is the edge asked for the new commit. */
  converged: (value: T) => boolean;
  log: LineSink;
  fetch?: Fetch;
  clock?: Clock;
}

/**
 * Runs a rollout between the probe's start and stop, then verifies the edge. The
 * caller (the deploy stage) rolls back when `failure` is set, and then verifies the
 * previous commit with `verifyPrevious`.
 */
export async function checkedRollout<T>(req: RolloutCheckRequest<T>): Promise<RolloutChecks<T>> {
  const clock = req.clock ?? realClock;
  const probe = req.probe ? startProbe({ settings: req.probe, ...(req.fetch ? { fetch: req.fetch } : {}), clock }) : undefined;
  if (req.probe) req.log(`probe: ${req.probe.ratePerSecond}/s to ${req.probe.url} during the rollout`);
  let value: T;
  try {
    value = await req.rollout();
  } catch (err) {
    await probe?.stop(); // a rollout that threw changed nothing worth measuring: no stray requests
    throw err;
  }
  const out: RolloutChecks<T> = { value };
  if (probe) {
    await clock.sleep(PROBE_TAIL_MS);
    out.probe = await probe.stop();
    req.log(describeProbe(out.probe));
    const failure = probeFailure(out.probe, req.probe?.maxFailed);
    if (failure) out.failure = failure;
  }
  if (req.verify && req.converged(value) && !out.failure) {
    out.verify = await verifyEdge({ settings: req.verify, commit: req.commit, previousCommit: req.previousCommit, log: req.log, ...(req.fetch ? { fetch: req.fetch } : {}), clock });
    if (!out.verify.ok) out.failure = `not verified at the edge: ${out.verify.detail}`;
  }
  return out;
}

/** After a rollback: the previous commit must show at the edge again (same expectation). */
export function verifyPrevious(settings: EdgeVerifySettings, previousCommit: string, log: LineSink, opts: { fetch?: Fetch; clock?: Clock } = {}): Promise<EdgeVerifyResult> {
  log(`rolled back: verifying that the edge serves ${previousCommit.slice(0, 12)} again`);
  return verifyEdge({ settings, commit: previousCommit, log, ...opts });
}

/** The run's port onto these checks (real fetch and clock). */
export const edgeChecks: EdgeCheckPort = {
  checkedRollout: (req) => checkedRollout(req),
  verifyPrevious: (settings, previousCommit, log) => verifyPrevious(settings, previousCommit, log),
};
