import { posix } from 'node:path';
import { DeployerError, PermanentError, errorMessage } from '../lib/errors.ts';
import { servicesToRestore } from './fleet-journal.ts';
import type { SelfIdentity, ServiceDeployResult } from './ports.ts';
import { emit, logTo, now, type RunCheckpoint, type RunContext } from './run-context.ts';
import type { StageName } from './states.ts';

/**
 * The work of each stage, given the run's context and the stage's signal (aborted on
 * stop or timeout; stage-runner.ts also stops waiting when it fires, whether or not the
 * adapter listens). A stage throws to fail; what it learns goes into the context.
 */
export type StageBody = (ctx: RunContext, signal: AbortSignal) => Promise<void>;

export const fetchStage: StageBody = async (ctx, signal) => {
  const { job } = ctx;
  const checkout = await ctx.deps.ports.source.checkout({ pipeline: job.pipeline, commit: job.commit, signal, log: logTo(ctx, 'fetch') });
  ctx.checkout = checkout;
  ctx.commit = checkout.commit;
  emit(ctx, { type: 'run.commit', runId: job.runId, commit: checkout.commit, subject: checkout.subject, author: checkout.author });
};

export const buildStage: StageBody = async (ctx, signal) => {
  const { pipeline } = ctx.job;
  const co = ctx.checkout;
  if (!co) throw new PermanentError('build_failed', 'nothing was checked out to build');
  const context = posix.normalize(pipeline.build.context).replace(/^\.\/?|\/$/g, '');
  const prefix = context === '' || context === '.' ? '' : `${context}/`;
  const files = co.files.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length));
  if (!files.includes(pipeline.build.dockerfile)) {
    throw new PermanentError('build_failed', `${prefix}${pipeline.build.dockerfile} does not exist in commit ${co.commit.slice(0, 12)}`);
  }
  await ctx.deps.ports.builder.build({
    contextDir: prefix ? posix.join(co.dir, context) : co.dir,
    files,
    dockerfile: pipeline.build.dockerfile,
    // SOURCE_COMMIT: a Dockerfile with `ARG SOURCE_COMMIT` can bake its revision in.
    args: { ...pipeline.build.args, SOURCE_COMMIT: co.commit },
    target: pipeline.build.target,
    builder: pipeline.build.builder,
    platform: pipeline.build.platform,
    secrets: pipeline.build.secrets,
    cacheFrom: pipeline.build.cacheFrom,
    labels: {
      'org.opencontainers.image.revision': co.commit,
      'org.opencontainers.image.source': `https://github.com/${pipeline.repo}`,
      'org.opencontainers.image.ref.name': pipeline.branch,
    },
    tags: [`${pipeline.image}:${co.commit}`, `${pipeline.image}:${pipeline.tag}`],
    signal,
    log: logTo(ctx, 'build'),
  });
};

export const pushStage: StageBody = async (ctx, signal) => {
  const { pipeline, runId } = ctx.job;
  const log = logTo(ctx, 'push');
  const push = (tag: string) => ctx.deps.ports.pusher.push({ repository: pipeline.image, registry: pipeline.registry, tag, signal, log });
  const bySha = await push(ctx.commit);
  const byTag = await push(pipeline.tag);
  if (bySha.digest !== byTag.digest) {
    throw new PermanentError('push_failed', `registry reported different digests for :${ctx.commit} (${bySha.digest}) and :${pipeline.tag} (${byTag.digest})`);
  }
  ctx.digest = byTag.digest;
  ctx.imageRef = `${pipeline.image}:${pipeline.tag}@${ctx.digest}`;
  emit(ctx, { type: 'image', runId, ref: ctx.imageRef, digest: ctx.digest });
};

/**
 * Updates each service in order and watches it to its true end. If one fails, the
 * ones already updated are brought back, so the fleet never serves a mix; the
 * deployment record advances only once every service runs the new image. Progress is
 * checkpointed, so a worker that dies mid-deploy is followed by one that watches; each
 * service's previous image is journalled before it changes (fleet-journal.ts), so a
 * follower also brings back what the dead worker had updated.
 *
 * With deploy.probe, light traffic runs during the rollout and its figures go on the
 * run; with deploy.verify, the edge must show the new commit once swarm converged.
 * If either says users did not get it, every service is put back, the edge is asked
 * for the previous commit, and the run ends rolled_back.
 */
export const deployStage: StageBody = async (ctx, signal) => {
  const { job } = ctx;
  const { pipeline, runId } = job;
  const log = logTo(ctx, 'deploy');
  const watching = ctx.resume?.deployStartedAt;
  const cp: RunCheckpoint = { commit: ctx.commit, image: ctx.imageRef, digest: ctx.digest, servicesDone: [...(ctx.resume?.servicesDone ?? [])], deployStartedAt: watching ?? now() };
  await ctx.deps.checkpoints.save(runId, cp);
  if (pipeline.services.length === 0) log('no services configured: nothing to deploy');
  const journal = ctx.deps.journal;
  const updated: ServiceDeployResult[] = [];
  const target = (service: string) => {
    const t = pipeline.targets.find((x) => x.service === service);
    if (!t) throw new PermanentError('deploy_failed', `service ${service} has no target engine`);
    return { service, endpoint: t.docker, owner: { instance: job.instance, pipeline: pipeline.name }, registry: pipeline.registry, settings: pipeline.deploy, signal, log };
  };
  /** Puts back every service this run (or a killed attempt of it) updated, but `except`, newest first. */
  const restoreOthers = async (except: string, why: string): Promise<boolean> => {
    let all = true;
    const entries = journal ? servicesToRestore(await journal.entries(runId), except) : updated.filter((u) => u.service !== except && u.previousImage).reverse().map((u) => ({ service: u.service, previousImage: u.previousImage }));
    for (const done of entries) {
      if (!done.previousImage) {
        // Nothing to go back to (it had no image before): it keeps the new one.
        all = false;
        continue;
      }
      log(`rolling ${done.service} back to ${done.previousImage} ${why}`);
      const restored = await ctx.deps.ports.deployer.restore({ ...target(done.service), image: done.previousImage });
      emit(ctx, { type: 'service.result', runId, at: now(), result: restored });
      await journal?.mark(runId, done.service, restored.outcome === 'failed' ? 'restore_failed' : 'restored');
      if (restored.outcome === 'failed') all = false;
    }
    return all;
  };
  /**
   * The rollout of every service: an error message when one did not end on the new
   * image. Set when swarm rolled the failing service back and every other one was put
   * back too: the run then ends rolled_back (the previous version serves), not failed.
   */
  let swarmRolledBack = false;
  const rollout = async (): Promise<string | undefined> => {
    for (const service of pipeline.services) {
      if (cp.servicesDone.includes(service)) continue;
      log(watching ? `resuming: watching ${service} roll out ${ctx.imageRef}` : `updating service ${service} to ${ctx.imageRef}`);
      const self = await selfIdentity(ctx);
      if (self?.service === service && cp.selfService !== service) {
        // Said before the update: swarm may stop this process any moment after it.
        cp.selfService = service;
        await ctx.deps.checkpoints.save(runId, cp);
        log(`${service} is the deployer's own service (this process is its task ${self.task.slice(0, 12)}): when swarm replaces this task, the new one takes this run over, checks it is the new version, and records the outcome`);
      }
      const result = await ctx.deps.ports.deployer.deploy({
        ...target(service),
        image: ctx.imageRef,
        recordedImage: job.recorded?.[service],
        ...(watching ? { resumeSince: watching } : {}),
        ...(journal ? { beforeUpdate: async (previousImage: string | null) => void (await journal.begin(runId, service, previousImage)) } : {}),
      });
      emit(ctx, { type: 'service.result', runId, at: now(), result });
      if (result.outcome !== 'succeeded') {
        // This one rolled itself back (or could not): it is not restored again.
        await journal?.mark(runId, service, result.outcome === 'failed' ? 'restore_failed' : 'restored');
        // Never leave the fleet serving a mix: bring back the ones already updated.
        const restored = await restoreOthers(service, 'so all services serve the same version');
        // Without a journal, a resumed attempt cannot know what a killed one updated.
        swarmRolledBack = result.outcome === 'rolled_back' && restored && (journal !== undefined || !watching);
        return `${service} ${result.outcome.replace('_', ' ')}: ${result.message}`;
      }
      if (self?.service === service) await checkSelf(ctx, service, log);
      updated.push(result);
      await journal?.mark(runId, service, 'updated');
      cp.servicesDone.push(service);
      await ctx.deps.checkpoints.save(runId, cp);
    }
    return undefined;
  };

  const { verify, probe } = pipeline;
  const checker = verify || probe ? ctx.deps.ports.checks : undefined;
  if ((verify || probe) && !checker) throw new PermanentError('deploy_failed', 'deploy.verify/deploy.probe are configured, but this worker has no edge checker');
  if (!checker || pipeline.services.length === 0) {
    const failure = await rollout();
    if (failure) throw new DeployerError(swarmRolledBack ? 'deploy_rolled_back' : 'deploy_failed', failure);
  } else {
    const previousCommit = job.recordedCommit && job.recordedCommit !== ctx.commit ? job.recordedCommit : undefined;
    const checked = await checker.checkedRollout({ probe, verify, commit: ctx.commit, previousCommit, rollout, converged: (failure) => failure === undefined, log });
    if (checked.probe || checked.verify) emit(ctx, { type: 'deploy.checks', runId, at: now(), ...(checked.probe ? { probe: checked.probe } : {}), ...(checked.verify ? { verify: checked.verify } : {}) });
    if (checked.value) throw new DeployerError(swarmRolledBack ? 'deploy_rolled_back' : 'deploy_failed', checked.value);
    if (checked.failure) {
      await restoreOthers('', 'because users did not get the new version');
      let edge = '';
      if (verify && previousCommit) {
        const again = await checker.verifyPrevious(verify, previousCommit, log);
        emit(ctx, { type: 'deploy.checks', runId, at: now(), verifyPrevious: again });
        edge = again.ok ? `; the edge serves ${previousCommit.slice(0, 12)} again` : `; the edge does NOT serve ${previousCommit.slice(0, 12)} again: ${again.detail}`;
      } else if (verify) {
        edge = '; no earlier deployment is recorded, so the edge was not checked after the rollback';
      }
      throw new DeployerError('deploy_rolled_back', `rolled back: ${checked.failure}${edge}`);
    }
  }
  // The deployment record advances only once the whole fleet runs the new image.
  for (const service of pipeline.services) {
    emit(ctx, { type: 'deployed', runId, service, image: ctx.imageRef, digest: ctx.digest, commit: ctx.commit, at: now() });
  }
};

/** The swarm task this worker runs as (undefined when it is none, or the engine does not say). */
async function selfIdentity(ctx: RunContext): Promise<SelfIdentity | undefined> {
  return ctx.deps.ports.self?.identity().catch((err: unknown) => {
    logTo(ctx, 'deploy')(`warning: could not tell whether this worker runs as a swarm task: ${errorMessage(err)}`);
    return undefined;
  });
}

/**
 * The deployer's own service converged on the new image: this process must be one of
 * its new tasks (the old one handed the run over when swarm stopped it). If it is not,
 * the service says "updated" while the deployer that answers is not the new version.
 */
async function checkSelf(ctx: RunContext, service: string, log: (line: string) => void): Promise<void> {
  const me = await ctx.deps.ports.self!.identity();
  const digest = me?.image.split('@')[1];
  if (me?.service !== service || digest !== ctx.digest) {
    throw new DeployerError('deploy_failed', `${service} converged on ${ctx.digest}, but this deployer (task ${me?.task.slice(0, 12) ?? '?'}) runs ${digest ?? me?.image ?? 'an unknown image'}: the new version is not the one running`);
  }
  log(`this deployer is task ${me.task.slice(0, 12)} of ${service}, running ${digest}: the new version took over`);
}

export const STAGES: Record<StageName, StageBody> = { fetch: fetchStage, build: buildStage, push: pushStage, deploy: deployStage };
