import { errorMessage, oneLine } from '../lib/errors.ts';
import { StopRequest } from './cancel.ts';
import { checkDescent, descentChecked } from './descent.ts';
import { raceAbort } from './stage-runner.ts';
import { createContext, emit, logTo, now, type RunContext, type RunDeps, type RunJob, type RunOutcome } from './run-context.ts';
import { runStage } from './stage-runner.ts';
import { STAGES } from './stages.ts';
import { STAGE_NAMES, type StageName } from './states.ts';

export type { CheckpointPort, DeployHandoff, RunCheckpoint, RunDeps, RunJob, RunOutcome } from './run-context.ts';
export { RETRY_DELAYS_MS } from './stage-runner.ts';

/**
 * Executes one run: fetch → build → push → deploy, reporting every transition and
 * output line, and ends in exactly one outcome with a one-line reason. `deps.stop`
 * aborts fetch, build and push (cancel, newer push, shutdown); deploy is never
 * interrupted by it, because a half-cancelled rollout is worse than either outcome.
 * Every stage also has a hard timeout that ends it even if its adapter hangs.
 * Never throws: a failure to publish the outcome is said in `reported`.
 */
export async function executeRun(job: RunJob, deps: RunDeps): Promise<RunOutcome> {
  const { runId } = job;
  deps.report.emit({ type: 'run.started', runId, at: now(), worker: job.worker, attempt: job.attempt, ...(job.phase ? { phase: job.phase } : {}) });
  // Attempt 2+: the checkpoint of the interrupted attempt (if it got past push); a
  // hand-off: the checkpoint the building worker left.
  const resume = job.attempt > 1 || job.phase === 'deploy' ? await deps.checkpoints.load(runId).catch(() => undefined) : undefined;
  const ctx = createContext(job, deps, resume);
  let outcome: Omit<RunOutcome, 'reported'>;
  try {
    outcome = ctx.mode === 'deploy' && !resume ? { status: 'failed', error: 'deploy: the image to deploy is unknown (its checkpoint is gone)' } : await runStages(ctx);
  } catch (err) {
    // Stage failures are outcomes already; this is a failure of the bookkeeping around them.
    outcome = { status: 'failed', error: oneLine(errorMessage(err)) };
  }
  if (outcome.status === 'parked') {
    emit(ctx, { type: 'run.parked', runId, at: now(), reason: outcome.error ?? 'shutdown' });
  } else if (outcome.status !== 'handed_off') {
    await deps.checkpoints.clear(runId).catch(() => undefined);
    await deps.journal?.clear(runId).catch(() => undefined);
    // Deployed, but not the branch's newest commit: an older push replayed or late
    // while the newer push's run was superseded by it. The store deploys the head next.
    const behind = outcome.status === 'succeeded' && ctx.branchHead !== undefined && ctx.branchHead !== ctx.commit ? ctx.branchHead : undefined;
    if (behind) logTo(ctx, null)(`${job.pipeline.branch} points at ${behind.slice(0, 12)}, not at what this run deployed: it is deployed next, unless a run for it is already on its way`);
    emit(ctx, {
      type: 'run.finished', runId, status: outcome.status, at: now(),
      ...(outcome.error ? { error: outcome.error } : {}),
      ...(outcome.supersededBy ? { supersededBy: outcome.supersededBy } : {}),
      ...(behind ? { branchHead: behind } : {}),
    });
  }
  const reported = await deps.report.flush().then(() => true, () => false);
  await housekeeping(ctx, outcome.status === 'succeeded');
  await deps.report.flush().catch(() => undefined);
  return { ...outcome, ...(outcome.status === 'succeeded' && ctx.commit ? { commit: ctx.commit } : {}), reported };
}

/**
 * Ends a run this worker decided not to run (a newer commit was deployed meanwhile, the
 * pipeline is not configured here). A run another execution held — a retry after its
 * worker died, a deploy taken over — is taken first: the lifecycle ignores an end from
 * an execution that does not hold the run.
 */
export function endWithoutRunning(
  job: Pick<RunJob, 'runId' | 'worker' | 'attempt' | 'phase'>,
  report: RunDeps['report'],
  outcome: { status: 'failed' | 'superseded'; error: string; supersededBy?: string },
): void {
  const at = now();
  if (job.attempt > 1 || job.phase === 'deploy') {
    report.emit({ type: 'run.started', runId: job.runId, at, worker: job.worker, attempt: job.attempt, ...(job.phase ? { phase: job.phase } : {}) });
  }
  report.emit({ type: 'run.finished', runId: job.runId, status: outcome.status, at, error: outcome.error, ...(outcome.supersededBy ? { supersededBy: outcome.supersededBy } : {}) });
}

/** Each stage as the run's mode says, until one does not succeed; the rest are closed. */
async function runStages(ctx: RunContext): Promise<Omit<RunOutcome, 'reported'>> {
  const { job, deps } = ctx;
  const { runId } = job;
  let outcome: Omit<RunOutcome, 'reported'> = { status: 'succeeded' };
  // Stages after one that failed, or after the descent check refused, are skipped; after a stop, cancelled.
  let rest: 'skipped' | 'cancelled' = 'skipped';
  for (const name of STAGE_NAMES) {
    if (outcome.status !== 'succeeded') {
      emit(ctx, { type: 'stage.finished', runId, stage: name, status: outcome.status === 'failed' ? 'skipped' : rest, at: now() });
      continue;
    }
    if (name !== 'deploy' && beforeDeploy(ctx, name)) continue;
    // A stop asked before a stage begins is honoured, deploy included — unless an
    // earlier attempt already began the deploy: a rollout in flight is watched to its end.
    if (deps.stop.aborted && (name !== 'deploy' || !ctx.resume?.deployStartedAt) && !(ctx.mode === 'deploy' && isShutdown(deps.stop.reason))) {
      outcome = stopped(deps.stop.reason);
      rest = 'cancelled';
      emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'cancelled', at: now() });
      continue;
    }
    if (name === 'deploy' && deps.handoff && ctx.mode !== 'deploy' && !(await canDeployHere(ctx))) {
      return handOff(ctx);
    }
    // Before building, and again before deploying (a rollout in flight is watched, not judged).
    if ((name === 'build' || (name === 'deploy' && !ctx.resume?.deployStartedAt)) && descentChecked(ctx)) {
      const refused = await descent(ctx, name === 'build' ? 'build' : 'deploy');
      if (refused) {
        outcome = refused;
        rest = refused.status === 'superseded' || refused.status === 'failed' ? 'skipped' : 'cancelled';
        emit(ctx, { type: 'stage.finished', runId, stage: name, status: rest, at: now() });
        continue;
      }
    }
    const result = await runStage(ctx, name, STAGES[name]);
    if (result.kind === 'stopped') {
      outcome = stopped(result.reason);
      rest = 'cancelled';
    } else if (result.kind === 'failed') outcome = { status: result.rolledBack ? 'rolled_back' : 'failed', error: result.error };
  }
  return outcome;
}

/**
 * The descent check (descent.ts) under the fetch timeout and the run's stop signal:
 * undefined when the run may go on, else the outcome that ends it.
 */
async function descent(ctx: RunContext, when: 'build' | 'deploy'): Promise<Omit<RunOutcome, 'reported'> | undefined> {
  const { deps, job } = ctx;
  // Before the deploy, as for the deploy itself, only the time limit stops it (a stop asked
  // before the deploy began was honoured just before; a deploy taken over is not parked).
  const limit = AbortSignal.timeout(job.pipeline.timeouts.fetch);
  const signal = when === 'build' ? AbortSignal.any([deps.stop, limit]) : limit;
  try {
    const verdict = await raceAbort(checkDescent(ctx, when, signal), signal);
    if (verdict.deploy) return undefined;
    return { status: 'superseded', error: verdict.message, ...(verdict.supersededBy && verdict.supersededBy !== job.runId ? { supersededBy: verdict.supersededBy } : {}) };
  } catch (err) {
    if (when === 'build' && deps.stop.aborted) return stopped(deps.stop.reason);
    const error = `${when}: could not check that ${ctx.commit.slice(0, 12)} descends from what serves: ${oneLine(errorMessage(err))}`;
    logTo(ctx, null)(error);
    return { status: 'failed', error };
  }
}

/**
 * The stages before deploy that this mode does not run: true when `name` was dealt
 * with (reported as skipped or done), false when it is to run.
 */
function beforeDeploy(ctx: RunContext, name: Exclude<StageName, 'deploy'>): boolean {
  const { runId } = ctx.job;
  switch (ctx.mode) {
    case 'build':
      return false;
    case 'deploy':
      return true; // the building worker reported them; they stand
    case 'rollback':
      if (name === 'fetch') {
        logTo(ctx, null)(`rollback: redeploying ${ctx.imageRef} (commit ${ctx.commit.slice(0, 12)}) without rebuilding`);
        emit(ctx, { type: 'image', runId, ref: ctx.imageRef, digest: ctx.digest });
      }
      emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'skipped', at: now() });
      return true;
    case 'resume':
      // The image was pushed by the interrupted attempt: nothing to redo before deploy.
      emit(ctx, { type: 'stage.started', runId, stage: name, at: now() });
      if (name === 'fetch') emit(ctx, { type: 'run.commit', runId, commit: ctx.commit, subject: '', author: '' });
      logTo(ctx, name)(`done by attempt ${ctx.job.attempt - 1} (image ${ctx.imageRef})`);
      if (name === 'push') emit(ctx, { type: 'image', runId, ref: ctx.imageRef, digest: ctx.digest });
      emit(ctx, { type: 'stage.finished', runId, stage: name, status: 'succeeded', at: now() });
      return true;
  }
}

async function canDeployHere(ctx: RunContext): Promise<boolean> {
  const endpoints = ctx.job.pipeline.targets.map((t) => t.docker);
  if (endpoints.length === 0) return true;
  // A check that fails says nothing: deploy here, and let Docker's own error speak.
  return ctx.deps.ports.deployer.canDeploy(endpoints).catch(() => true);
}

/**
 * This worker reaches no swarm manager: the deploy goes to one that does. The
 * checkpoint says what to deploy; the job is queued before the run says it was handed
 * off, so a run is never left waiting for a deploy nobody was asked to do.
 */
async function handOff(ctx: RunContext): Promise<Omit<RunOutcome, 'reported'>> {
  const { job, deps } = ctx;
  try {
    await deps.checkpoints.save(job.runId, { commit: ctx.commit, image: ctx.imageRef, digest: ctx.digest, servicesDone: [] });
    await deps.handoff!.handOff(job);
  } catch (err) {
    const error = `deploy: could not hand the deploy to a worker that reaches a swarm manager: ${oneLine(errorMessage(err))}`;
    logTo(ctx, 'deploy')(error);
    emit(ctx, { type: 'stage.finished', runId: job.runId, stage: 'deploy', status: 'skipped', at: now() });
    return { status: 'failed', error };
  }
  emit(ctx, { type: 'run.handoff', runId: job.runId, at: now(), reason: `${job.worker} reaches no swarm manager; a worker that does deploys ${ctx.imageRef}` });
  return { status: 'handed_off' };
}

/** After the outcome is out, so it never delays what people wait for. */
async function housekeeping(ctx: RunContext, succeeded: boolean): Promise<void> {
  const { job, deps } = ctx;
  if (ctx.checkout) await ctx.checkout.cleanup().catch((err: unknown) => logTo(ctx, null)(`warning: could not remove work tree: ${errorMessage(err)}`));
  if (succeeded && ctx.mode === 'build') {
    // Old builds of this pipeline would fill the build host's disk otherwise.
    const { image, retention } = job.pipeline;
    const removed = await deps.ports.builder.prune(image, retention.images, job.protect).catch(() => 0);
    if (removed > 0) logTo(ctx, null)(`removed ${removed} old image(s) of ${image} from the build host (keeping ${retention.images})`);
  }
}

/** A deploy taken over from another worker is not parked by a shutdown: it is as far as a deploy goes. */
function isShutdown(reason: unknown): boolean {
  return reason instanceof StopRequest && reason.kind === 'shutdown';
}

function stopped(reason: unknown): Omit<RunOutcome, 'reported'> {
  if (reason instanceof StopRequest) {
    if (reason.kind === 'shutdown') return { status: 'parked', error: reason.message };
    if (reason.kind === 'supersede') return { status: 'superseded', error: reason.message, ...(reason.supersededBy ? { supersededBy: reason.supersededBy } : {}) };
    return { status: 'cancelled', error: reason.message };
  }
  return { status: 'cancelled', error: errorMessage(reason) };
}
