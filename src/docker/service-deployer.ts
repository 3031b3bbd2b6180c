import type Docker from 'dockerode';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeploySettings, RegistryConfig } from '../config/types.ts';
import { formatDuration } from '../lib/duration.ts';
import { DeployerError } from '../lib/errors.ts';
import { isTransient } from './transient.ts';
import type { DeployPort, DeployRequest, ServiceDeployResult } from '../pipeline/ports.ts';
import { authFor } from './auth.ts';
import { dockerMessage } from './build.ts';
import { assessPlacement, readPlacement } from './placement.ts';
import { rolloutWarnings } from './warnings.ts';
import { assessRollout, taskErrors, tasksRunning, type RolloutSnapshot, type TaskSnapshot, type UpdateStatus } from './rollout.ts';

/** Rollout polling: two cheap API calls; 100 ms keeps the lag after convergence ~50 ms. */
const POLL_MS = 100;
const MAX_SEQUENCE_RETRIES = 5;
/** How long a rollback may take to show the previous version serving again. */
const ROLLBACK_VERIFY_MS = 120_000;

interface ServiceInfo {
  ID: string;
  Version: { Index: number };
  Spec: Record<string, any>;
  UpdateStatus?: UpdateStatus;
}

type WatchVerdict =
  | { kind: 'converged' }
  | { kind: 'rolled_back_by_swarm'; reason: string; taskErrors: string[] }
  | { kind: 'failed'; reason: string; taskErrors: string[] }
  | { kind: 'timeout'; detail: string; taskErrors: string[] };

/**
 * Updates a swarm service to a pinned image and watches the rollout until it has
 * truly converged or truly failed, then says which: a rollback counts as one only
 * once the previous image is verified running again. Swarm's own defaults
 * (stop-first, pause on failure) cause downtime and stalls, so the pipeline's rollout
 * settings are written into the service spec with every update.
 */
export class SwarmDeployer implements Pick<DeployPort, 'deploy' | 'restore'> {
  readonly #docker: Docker;
  readonly #registries: RegistryConfig[];
  constructor(docker: Docker, registries: RegistryConfig[]) {
    this.#docker = docker;
    this.#registries = registries;
  }

  async deploy(req: DeployRequest): Promise<ServiceDeployResult> {
    const { log } = req;
    const info = await this.#inspect(req.service);
    assertOwner(info, req);
    const previous = specImage(info);
    log(`service ${req.service} currently runs ${previous ?? '(no image)'}`);
    for (const w of rolloutWarnings(req.service, req.settings, info.Spec, await this.#nodeCount())) log(`warning: ${w}`);
    if (req.recordedImage && previous !== req.recordedImage) {
      log(`drift: ${req.service} was changed outside the deployer (recorded ${req.recordedImage}); this deploy replaces ${previous}`);
    }
    const started = Date.now();
    let verdict: WatchVerdict | undefined;
    if (req.resumeSince) verdict = await this.#resume(req, info);
    if (!verdict) {
      await this.#checkPlacement(req, info);
      await req.beforeUpdate?.(previous);
      await this.#update(req, info, req.image);
      verdict = await this.#watch(req, info.ID, info.UpdateStatus?.StartedAt, started);
    }
    return this.#conclude(req, info.ID, previous, verdict, started);
  }

  async precheck(req: DeployRequest): Promise<void> {
    const info = await this.#inspect(req.service);
    assertOwner(info, req);
    await this.#checkPlacement(req, info);
  }

  async restore(req: DeployRequest): Promise<ServiceDeployResult> {
    const info = await this.#inspect(req.service);
    const from = specImage(info);
    const started = Date.now();
    await this.#update(req, info, req.image);
    const verdict = await this.#watch(req, info.ID, info.UpdateStatus?.StartedAt, started);
    const ok = verdict.kind === 'converged';
    req.log(`${req.service}: ${ok ? 'rolled back to' : 'could not roll back to'} ${req.image}`);
    return {
      service: req.service,
      outcome: ok ? 'rolled_back' : 'failed',
      previousImage: from,
      image: specImage(await this.#inspect(req.service)),
      taskErrors: 'taskErrors' in verdict ? verdict.taskErrors : [],
      message: ok ? `restored ${req.image} after another service failed` : `restoring ${req.image} failed: ${'reason' in verdict ? verdict.reason : verdict.kind}`,
    };
  }

  async #conclude(req: DeployRequest, id: string, previous: string | null, verdict: WatchVerdict, started: number): Promise<ServiceDeployResult> {
    const base = { service: req.service, previousImage: previous };
    const errors = 'taskErrors' in verdict ? verdict.taskErrors : [];
    for (const e of errors) req.log(`${req.service}: task error: ${e}`);
    const why = errors[0] ? ` (task error: ${errors[0]})` : '';
    switch (verdict.kind) {
      case 'converged':
        req.log(`${req.service} converged in ${formatDuration(Date.now() - started)}`);
        return { ...base, outcome: 'succeeded', image: req.image, taskErrors: [], message: 'converged' };
      case 'failed':
        return { ...base, outcome: 'failed', image: specImage(await this.#inspectId(id)), taskErrors: errors, message: `${verdict.reason}${why}` };
      case 'rolled_back_by_swarm': {
        const serving = previous ? await this.#verifyServing(req, id, previous) : false;
        return {
          ...base,
          outcome: serving ? 'rolled_back' : 'failed',
          image: specImage(await this.#inspectId(id)),
          taskErrors: errors,
          message: serving ? `${verdict.reason}${why}; ${previous} verified serving again` : `${verdict.reason}${why}; the previous version is NOT verified serving`,
        };
      }
      case 'timeout': {
        req.log(`${req.service}: no convergence within ${formatDuration(req.settings.timeoutMs)} (${verdict.detail}); rolling back`);
        const requested = await this.#requestRollback(req, id);
        const serving = requested && previous ? await this.#verifyServing(req, id, previous) : false;
        return {
          ...base,
          outcome: serving ? 'timed_out' : 'failed',
          image: specImage(await this.#inspectId(id)),
          taskErrors: errors,
          message: `rollout did not converge within ${formatDuration(req.settings.timeoutMs)} (${verdict.detail})${why}; ${serving ? `rolled back, ${previous} verified serving` : 'rollback NOT verified'}`,
        };
      }
    }
  }

  /**
   * Refuses, before touching the service, an update swarm could never place: it would
   * leave the new task pending until deploy.timeout (src/docker/placement.ts). A check
   * that cannot be made (the engine does not answer it) does not block the deploy.
   */
  async #checkPlacement(req: DeployRequest, info: ServiceInfo): Promise<void> {
    let verdict;
    const started = Date.now();
    try {
      const input = await readPlacement(this.#docker, info, req.image, req.settings.order, authFor(this.#registries, req.registry), req.log);
      verdict = assessPlacement(input);
    } catch (err) {
      req.log(`warning: placement check skipped: ${dockerMessage(err)}`);
      return;
    }
    if (verdict.ok) {
      if (verdict.candidates.length > 0) req.log(`placement check: a new task of ${req.service} fits on ${verdict.candidates.join(', ')} (${Date.now() - started} ms)`);
      return;
    }
    throw new DeployerError('placement_failed', `cannot place a new task of ${req.service}: ${verdict.reason}; the service was not changed`);
  }

  async #update(req: DeployRequest, first: ServiceInfo, image: string): Promise<void> {
    const auth = authFor(this.#registries, req.registry);
    let info = first;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#docker.getService(info.ID).update(auth as never, { _query: { version: info.Version.Index }, _body: withImage(info.Spec, image, req.settings, req.owner) } as never);
        if (specImage(info) === image) req.log(`service already specifies ${image}; verifying its tasks`);
        return;
      } catch (err) {
        const message = dockerMessage(err);
        // Someone else changed the service between our inspect and update: re-read and retry.
        if (/update out of sequence/.test(message) && attempt < MAX_SEQUENCE_RETRIES) {
          req.log(`service changed while updating (attempt ${attempt}); re-reading and retrying`);
          info = await this.#inspect(req.service);
          continue;
        }
        throw new DeployerError('deploy_failed', `updating ${req.service}: ${message}`, { cause: err, retryable: isTransient(err) });
      }
    }
  }

  async #watch(req: DeployRequest, id: string, previousStartedAt: string | undefined, started: number): Promise<WatchVerdict> {
    const { log, signal, settings } = req;
    let lastDetail = '';
    let rollingBack = false;
    const deadline = started + settings.timeoutMs;
    for (;;) {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      const { snapshot } = await this.#read(id, req.image, previousStartedAt, Date.now() - started);
      const verdict = assessRollout(snapshot);
      const detail = verdict.kind === 'failed' ? verdict.reason : verdict.detail;
      if (detail !== lastDetail) {
        log(`${req.service}: ${detail}`);
        lastDetail = detail;
      }
      if (verdict.kind === 'converged') return { kind: 'converged' };
      if (verdict.kind === 'failed') {
        const bySwarm = snapshot.updateStatus?.State === 'rollback_completed';
        return { kind: bySwarm ? 'rolled_back_by_swarm' : 'failed', reason: verdict.reason, taskErrors: verdict.taskErrors };
      }
      if (verdict.kind === 'rolling_back') rollingBack = true;
      // A rollback swarm started is followed to its end even past our deadline.
      if (Date.now() > deadline && !rollingBack) return { kind: 'timeout', detail, taskErrors: taskErrors(snapshot.tasks, snapshot.target) };
      if (Date.now() > deadline + ROLLBACK_VERIFY_MS) return { kind: 'failed', reason: `swarm's rollback did not finish (${detail})`, taskErrors: taskErrors(snapshot.tasks, snapshot.target) };
      await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * After the deployer died mid-deploy: if our image is already in the spec, watch
   * that rollout to its end; if swarm rolled it back meanwhile, that is the outcome.
   * Returns undefined when our update never reached swarm (then update as usual).
   */
  async #resume(req: DeployRequest, info: ServiceInfo): Promise<WatchVerdict | undefined> {
    const status = info.UpdateStatus;
    const since = Date.parse(req.resumeSince!);
    const updatedSince = status?.StartedAt !== undefined && Date.parse(status.StartedAt) >= since - 5_000;
    if (specImage(info) === req.image) {
      req.log(`${req.service}: our update is in the spec (${status?.State ?? 'no update status'}); watching it`);
      return this.#watch(req, info.ID, undefined, since);
    }
    if (updatedSince && status?.State === 'rollback_completed') {
      return { kind: 'rolled_back_by_swarm', reason: `swarm rolled the update back while the deployer was down${status.Message ? `: ${status.Message}` : ''}`, taskErrors: [] };
    }
    req.log(`${req.service}: the interrupted attempt had not updated the service; updating now`);
    return undefined;
  }

  async #requestRollback(req: DeployRequest, id: string): Promise<boolean> {
    try {
      const info = await this.#inspectId(id);
      await this.#docker.getService(id).update(authFor(this.#registries, req.registry) as never, {
        _query: { version: info.Version.Index, rollback: 'previous' },
        _body: info.Spec,
      } as never);
      return true;
    } catch (err) {
      req.log(`${req.service}: rollback request failed: ${dockerMessage(err)}`);
      return false;
    }
  }

  /** True once the spec is back on `image` and enough of its tasks run it. */
  async #verifyServing(req: DeployRequest, id: string, image: string): Promise<boolean> {
    const deadline = Date.now() + ROLLBACK_VERIFY_MS;
    while (Date.now() < deadline) {
      const { snapshot, info } = await this.#read(id, image, undefined, 0);
      const { running, want } = tasksRunning(snapshot.tasks, image, snapshot.replicas);
      const settled = !info.UpdateStatus?.State || ['rollback_completed', 'completed'].includes(info.UpdateStatus.State);
      if (specImage(info) === image && running >= want && settled) {
        req.log(`${req.service}: verified ${running}/${want} tasks running ${image}`);
        return true;
      }
      await sleep(POLL_MS);
    }
    req.log(`${req.service}: ${image} is not running again after ${formatDuration(ROLLBACK_VERIFY_MS)}`);
    return false;
  }

  /** The service and its tasks, read together, as the rollout assessment sees them. */
  async #read(id: string, target: string, previousStartedAt: string | undefined, elapsedMs: number): Promise<{ snapshot: RolloutSnapshot; info: ServiceInfo }> {
    const [info, tasks] = await Promise.all([
      this.#inspectId(id),
      this.#docker.listTasks({ filters: { service: [id] } }) as Promise<Record<string, any>[]>,
    ]);
    const snapshot: RolloutSnapshot = {
      updateStatus: info.UpdateStatus,
      previousStartedAt,
      tasks: tasks.map(toTaskSnapshot),
      target,
      replicas: info.Spec.Mode?.Replicated ? Number(info.Spec.Mode.Replicated.Replicas ?? 1) : undefined,
      elapsedMs,
    };
    return { snapshot, info };
  }

  async #nodeCount(): Promise<number> {
    const nodes = (await this.#docker.listNodes().catch(() => [])) as { Status?: { State?: string } }[];
    return Math.max(1, nodes.filter((n) => n.Status?.State === 'ready').length);
  }

  async #inspectId(id: string): Promise<ServiceInfo> {
    return (await this.#docker.getService(id).inspect()) as ServiceInfo;
  }

  async #inspect(name: string): Promise<ServiceInfo> {
    let info: ServiceInfo;
    try {
      info = (await this.#docker.getService(name).inspect()) as ServiceInfo;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) throw new DeployerError('service_missing', `service "${name}" does not exist on this swarm`);
      throw new DeployerError('docker_unavailable', `inspecting service ${name}: ${dockerMessage(err)}`, { retryable: isTransient(err), cause: err });
    }
    // The API also resolves ID prefixes: "www" could match another service's ID.
    if (info.Spec?.Name !== name) throw new DeployerError('service_missing', `service "${name}" does not exist on this swarm`);
    return info;
  }
}

function specImage(info: ServiceInfo): string | null {
  return (info.Spec.TaskTemplate?.ContainerSpec?.Image as string | undefined) ?? null;
}

export const OWNER_LABELS = { instance: 'deployer.instance', pipeline: 'deployer.pipeline' } as const;

/** Refuses a service another deployer instance or another pipeline manages (labels). */
function assertOwner(info: ServiceInfo, req: DeployRequest): void {
  const labels = (info.Spec.Labels ?? {}) as Record<string, string>;
  const instance = labels[OWNER_LABELS.instance];
  const pipeline = labels[OWNER_LABELS.pipeline];
  if ((instance && instance !== req.owner.instance) || (pipeline && pipeline !== req.owner.pipeline)) {
    throw new DeployerError(
      'service_owned',
      `service ${req.service} is managed by deployer "${instance ?? '?'}" pipeline "${pipeline ?? '?'}", not "${req.owner.instance}" pipeline "${req.owner.pipeline}"; ` +
        `refusing to fight over it (remove its ${OWNER_LABELS.instance} and ${OWNER_LABELS.pipeline} labels to hand it over)`,
    );
  }
}

/** A copy of the spec with the new image, the pipeline's rollout settings and our ownership labels. */
export function withImage(spec: Record<string, any>, image: string, settings: DeploySettings, owner?: { instance: string; pipeline: string }): Record<string, any> {
  const next = structuredClone(spec);
  if (owner) next.Labels = { ...next.Labels, [OWNER_LABELS.instance]: owner.instance, [OWNER_LABELS.pipeline]: owner.pipeline };
  next.TaskTemplate ??= {};
  next.TaskTemplate.ContainerSpec ??= {};
  next.TaskTemplate.ContainerSpec.Image = image;
  const monitor = settings.monitorMs * 1_000_000; // nanoseconds
  // Services made by the CLI may lack these blocks entirely.
  next.UpdateConfig = { Parallelism: 1, ...next.UpdateConfig, Order: settings.order, FailureAction: settings.failureAction, Monitor: monitor };
  next.RollbackConfig = { Parallelism: 1, ...next.RollbackConfig, Order: settings.order, FailureAction: 'pause', Monitor: monitor };
  return next;
}

function toTaskSnapshot(t: Record<string, any>): TaskSnapshot {
  return {
    id: String(t.ID),
    image: String(t.Spec?.ContainerSpec?.Image ?? ''),
    desiredState: String(t.DesiredState ?? ''),
    state: String(t.Status?.State ?? ''),
    err: t.Status?.Err || undefined,
    message: t.Status?.Message || undefined,
    exitCode: t.Status?.ContainerStatus?.ExitCode,
  };
}
