import { DeployerError, errorMessage, oneLine } from '../lib/errors.ts';
import { StageTimeout, StopRequest } from './cancel.ts';
import { emit, logTo, now, type RunContext } from './run-context.ts';
import type { StageBody } from './stages.ts';
import type { StageName } from './states.ts';

/** Pauses before each retry of a stage that failed with a transient error. */
export const RETRY_DELAYS_MS: readonly number[] = [1_000, 3_000, 9_000];

/** `rolledBack`: the deploy was undone because users did not get the new commit (the run ends rolled_back). */
export type StageResult = { kind: 'succeeded' } | { kind: 'stopped'; reason: StopRequest } | { kind: 'failed'; error: string; rolledBack?: boolean };

/**
 * Settles with `work`, or rejects with the signal's reason as soon as it is aborted —
 * whether or not `work` listens to the signal. Adapters are asked to stop through the
 * signal; this makes sure the run stops waiting for them either way (a read that
 * ignores its signal once hung a build forever). What `work` does afterwards is
 * ignored, its failure included.
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reasonOf(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Waits `ms`, or rejects as soon as `signal` is aborted (the timer goes too). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(reasonOf(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function reasonOf(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

/**
 * Runs one stage: reports it started, runs its body under the stage's hard timeout
 * (and, except for deploy, the run's stop signal), retries transient failures after a
 * pause, and reports how it ended. Deploy listens to its own timeout only: a
 * half-cancelled rollout is worse than either outcome.
 */
export async function runStage(ctx: RunContext, name: StageName, body: StageBody): Promise<StageResult> {
  const { job, deps } = ctx;
  const runId = job.runId;
  const limit = job.pipeline.timeouts[name];
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new StageTimeout(name, limit)), limit);
  const signal = name === 'deploy' ? timeout.signal : AbortSignal.any([deps.stop, timeout.signal]);
  const log = logTo(ctx, name);
  const delays = deps.retryDelaysMs ?? RETRY_DELAYS_MS;
  emit(ctx, { type: 'stage.started', runId, stage: name, at: now() });
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await raceAbort(body(ctx, signal), signal);
        break;
      } catch (err) {
        // Transient (registry 5xx/429, connection reset, daemon restarting): try again
        // after a pause; anything the adapter classified as permanent fails at once.
        const delay = delays[attempt - 1];
        const retryable = typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === true;
        if (!retryable || delay === undefined || signal.aborted) throw err;
        log(`retry ${attempt}/${delays.length} in ${delay / 1000} s after a transient error: ${oneLine(errorMessage(err))}`);
        await pause(delay, signal);
      }
    }
    emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'succeeded', at: now() });
    return { kind: 'succeeded' };
  } catch (err) {
    const reason: unknown = signal.aborted ? signal.reason : undefined;
    if (reason instanceof StopRequest) {
      log(`stopped: ${reason.message}`);
      emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'cancelled', at: now(), error: reason.message });
      return { kind: 'stopped', reason };
    }
    const full = reason instanceof StageTimeout ? reason.message : errorMessage(err);
    log(`error: ${full}`);
    const message = oneLine(full);
    emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'failed', at: now(), error: message });
    const rolledBack = err instanceof DeployerError && err.code === 'deploy_rolled_back' && !(reason instanceof StageTimeout);
    return { kind: 'failed', error: `${name}: ${message}`, ...(rolledBack ? { rolledBack } : {}) };
  } finally {
    clearTimeout(timer);
  }
}
