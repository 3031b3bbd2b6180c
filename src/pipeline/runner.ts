import { posix } from 'node:path';
import type { PipelineConfig } from '../config/types.ts';
import { DeployerError, errorMessage, oneLine } from '../lib/errors.ts';
import { StageTimeout, StopRequest } from './cancel.ts';
import type { LineSink, RunReporter } from './events.ts';
import type { Checkout, RunPorts, ServiceDeployResult } from './ports.ts';
import type { RunStatus, StageName } from './states.ts';

export interface RunJob {
  runId: string;
  pipeline: PipelineConfig;
  /** Null means "the branch head as it is now" (rebuild). */
  commit: string | null;
  worker: string;
  /** 1 for the first try; more when the job is retried after its worker died. */
  attempt: number;
  /** Rollback: deploy this pinned image (repo:tag@sha256:…) without fetching or building. */
  image?: string;
  /** This deployer's instance name, written into service labels. */
  instance: string;
  /** Last recorded image per service (from the store, via the job). */
  recorded?: Record<string, string>;
}

/** Where a run got to, kept outside the worker so a retry can resume a deploy. */
export interface RunCheckpoint {
  commit: string;
  image: string;
  digest: string;
  deployStartedAt: string;
  servicesDone: string[];
}

export interface CheckpointPort {
  load(runId: string): Promise<RunCheckpoint | undefined>;
  save(runId: string, checkpoint: RunCheckpoint): Promise<void>;
  clear(runId: string): Promise<void>;
}

export interface RunOutcome {
  /** 'parked': stopped by a shutdown before deploy; the job goes back to the queue. */
  status: RunStatus | 'parked';
  error?: string;
  supersededBy?: string;
}

const now = () => new Date().toISOString();

/** Pauses before each retry of a stage that failed with a transient error. */
export const RETRY_DELAYS_MS = [1_000, 3_000, 9_000];

/**
 * Executes one run: fetch → build → push → deploy, reporting every transition and
 * output line, and ends in exactly one terminal state with a one-line reason. `stop`
 * aborts fetch, build and push (cancel, newer push, shutdown); deploy is never
 * interrupted by it, because a half-cancelled rollout is worse than either outcome.
 * Every stage also has a hard timeout. Never throws.
 */
export async function executeRun(job: RunJob, ports: RunPorts, report: RunReporter, stop: AbortSignal, checkpoints: CheckpointPort): Promise<RunOutcome> {
  const { runId, pipeline } = job;
  const logTo = (stage: StageName | null): LineSink => (line) => report.emit({ type: 'log', runId, stage, at: now(), lines: [line] });
  report.emit({ type: 'run.started', runId, at: now(), worker: job.worker, attempt: job.attempt });

  const resume = job.attempt > 1 ? await checkpoints.load(runId).catch(() => undefined) : undefined;
  let checkout: Checkout | undefined;
  let commit = resume?.commit ?? job.commit ?? '';
  let imageRef = resume?.image ?? job.image ?? '';
  let digest = resume?.digest ?? (job.image ? job.image.slice(job.image.indexOf('@') + 1) : '');

  const stages: [StageName, (signal: AbortSignal) => Promise<void>][] = [
    [
      'fetch',
      async (signal) => {
        checkout = await ports.source.checkout({ pipeline, commit: job.commit, signal, log: logTo('fetch') });
        commit = checkout.commit;
        report.emit({ type: 'run.commit', runId, commit, subject: checkout.subject, author: checkout.author });
      },
    ],
    [
      'build',
      async (signal) => {
        const co = checkout!;
        const context = posix.normalize(pipeline.build.context).replace(/^\.\/?|\/$/g, '');
        const prefix = context === '' || context === '.' ? '' : `${context}/`;
        const files = co.files.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length));
        if (!files.includes(pipeline.build.dockerfile)) {
          throw new DeployerError('build_failed', `${prefix}${pipeline.build.dockerfile} does not exist in commit ${co.commit.slice(0, 12)}`);
        }
        await ports.builder.build({
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
          log: logTo('build'),
        });
      },
    ],
    [
      'push',
      async (signal) => {
        const log = logTo('push');
        const bySha = await ports.pusher.push({ repository: pipeline.image, registry: pipeline.registry, tag: commit, signal, log });
        const byTag = await ports.pusher.push({ repository: pipeline.image, registry: pipeline.registry, tag: pipeline.tag, signal, log });
        if (bySha.digest !== byTag.digest) {
          throw new DeployerError('push_failed', `registry reported different digests for :${commit} (${bySha.digest}) and :${pipeline.tag} (${byTag.digest})`);
        }
        digest = byTag.digest;
        imageRef = `${pipeline.image}:${pipeline.tag}@${digest}`;
        report.emit({ type: 'image', runId, ref: imageRef, digest });
      },
    ],
    [
      'deploy',
      async (signal) => {
        const log = logTo('deploy');
        const cp: RunCheckpoint = resume ?? { commit, image: imageRef, digest, deployStartedAt: now(), servicesDone: [] };
        await checkpoints.save(runId, cp);
        if (pipeline.services.length === 0) log('no services configured: nothing to deploy');
        const updated: ServiceDeployResult[] = [];
        const target = (service: string) => {
          const t = pipeline.targets.find((x) => x.service === service)!;
          return { service, endpoint: t.docker, owner: { instance: job.instance, pipeline: pipeline.name }, registry: pipeline.registry, settings: pipeline.deploy, signal, log };
        };
        for (const service of pipeline.services) {
          if (cp.servicesDone.includes(service)) continue;
          log(resume ? `resuming: watching ${service} roll out ${imageRef}` : `updating service ${service} to ${imageRef}`);
          const result = await ports.deployer.deploy({
            ...target(service), image: imageRef, recordedImage: job.recorded?.[service],
            ...(resume ? { resumeSince: resume.deployStartedAt } : {}),
          });
          report.emit({ type: 'service.result', runId, at: now(), result });
          if (result.outcome !== 'succeeded') {
            // Never leave the fleet serving a mix: bring back the ones already updated.
            for (const done of updated.reverse()) {
              if (!done.previousImage) continue;
              log(`rolling ${done.service} back to ${done.previousImage} so all services serve the same version`);
              const restored = await ports.deployer.restore({ ...target(done.service), image: done.previousImage });
              report.emit({ type: 'service.result', runId, at: now(), result: restored });
            }
            throw new DeployerError('deploy_failed', `${service} ${result.outcome.replace('_', ' ')}: ${result.message}`);
          }
          updated.push(result);
          cp.servicesDone.push(service);
          await checkpoints.save(runId, cp);
        }
        // The deployment record advances only once the whole fleet runs the new image.
        for (const service of pipeline.services) {
          report.emit({ type: 'deployed', runId, service, image: imageRef, digest, commit, at: now() });
        }
      },
    ],
  ];

  let outcome: RunOutcome = { status: 'succeeded' };
  try {
    for (const [name, body] of stages) {
      if (outcome.status !== 'succeeded') {
        report.emit({ type: 'stage.finished', runId, stage: name, status: outcome.status === 'failed' ? 'skipped' : 'cancelled', at: now() });
        continue;
      }
      if (job.image && !resume && name !== 'deploy') {
        if (name === 'fetch') {
          logTo(null)(`rollback: redeploying ${job.image} (commit ${commit.slice(0, 12)}) without rebuilding`);
          report.emit({ type: 'image', runId, ref: imageRef, digest });
        }
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'skipped', at: now() });
        continue;
      }
      if (resume && name !== 'deploy') {
        // The image was pushed by the interrupted attempt: nothing to redo before deploy.
        report.emit({ type: 'stage.started', runId, stage: name, at: now() });
        if (name === 'fetch') report.emit({ type: 'run.commit', runId, commit, subject: '', author: '' });
        logTo(name)(`done by attempt ${job.attempt - 1} (image ${imageRef})`);
        if (name === 'push') report.emit({ type: 'image', runId, ref: imageRef, digest });
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'succeeded', at: now() });
        continue;
      }
      if (stop.aborted && name !== 'deploy') {
        outcome = stopped(stop.reason);
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'cancelled', at: now() });
        continue;
      }
      const limit = pipeline.timeouts[name];
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(new StageTimeout(name, limit)), limit);
      // Deploy listens to its own timeout only: see the function comment.
      const signal = name === 'deploy' ? timeout.signal : AbortSignal.any([stop, timeout.signal]);
      report.emit({ type: 'stage.started', runId, stage: name, at: now() });
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            await body(signal);
            break;
          } catch (err) {
            // Transient (registry 5xx/429, connection reset, daemon restarting): try again
            // after a pause; anything the adapter marked permanent fails at once.
            const delay = RETRY_DELAYS_MS[attempt - 1];
            if (!(err instanceof DeployerError) || !err.retryable || delay === undefined || signal.aborted) throw err;
            logTo(name)(`retry ${attempt}/${RETRY_DELAYS_MS.length} in ${delay / 1000} s after a transient error: ${oneLine(err.message)}`);
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, delay);
              signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
            });
            if (signal.aborted) throw err;
          }
        }
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'succeeded', at: now() });
      } catch (err) {
        const reason: unknown = signal.aborted ? signal.reason : undefined;
        if (reason instanceof StopRequest) {
          outcome = stopped(reason);
          logTo(name)(`stopped: ${reason.message}`);
          report.emit({ type: 'stage.finished', runId, stage: name, status: 'cancelled', at: now(), error: reason.message });
        } else {
          const message = reason instanceof StageTimeout ? reason.message : oneLine(errorMessage(err));
          logTo(name)(`error: ${reason instanceof StageTimeout ? reason.message : errorMessage(err)}`);
          report.emit({ type: 'stage.finished', runId, stage: name, status: 'failed', at: now(), error: message });
          outcome = { status: 'failed', error: `${name}: ${message}` };
        }
      } finally {
        clearTimeout(timer);
      }
    }
  } catch (err) {
    outcome = { status: 'failed', error: oneLine(errorMessage(err)) };
  }
  if (outcome.status === 'parked') {
    report.emit({ type: 'run.parked', runId, at: now(), reason: outcome.error ?? 'shutdown' });
  } else {
    await checkpoints.clear(runId).catch(() => undefined);
    report.emit({
      type: 'run.finished', runId, status: outcome.status, at: now(),
      ...(outcome.error ? { error: outcome.error } : {}),
      ...(outcome.supersededBy ? { supersededBy: outcome.supersededBy } : {}),
    });
  }
  await report.flush();
  // Housekeeping once the outcome is out, so it never delays what people wait for.
  if (checkout) await checkout.cleanup().catch((err) => logTo(null)(`warning: could not remove work tree: ${errorMessage(err)}`));
  if (outcome.status === 'succeeded' && !job.image) {
    // Old builds of this pipeline would fill the build host's disk otherwise.
    const removed = await ports.builder.prune(pipeline.image, pipeline.retention.images).catch(() => 0);
    if (removed > 0) logTo(null)(`removed ${removed} old image(s) of ${pipeline.image} from the build host (keeping ${pipeline.retention.images})`);
  }
  await report.flush().catch(() => undefined);
  return outcome;
}

function stopped(reason: unknown): RunOutcome {
  if (reason instanceof StopRequest) {
    if (reason.kind === 'shutdown') return { status: 'parked', error: reason.message };
    if (reason.kind === 'supersede') return { status: 'superseded', error: reason.message, ...(reason.supersededBy ? { supersededBy: reason.supersededBy } : {}) };
    return { status: 'cancelled', error: reason.message };
  }
  return { status: 'cancelled', error: errorMessage(reason) };
}
