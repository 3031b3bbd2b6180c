import type Docker from 'dockerode';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeploySettings, RegistryConfig } from '../config/types.ts';
import { DeployerError } from '../lib/errors.ts';
import { formatDuration } from '../lib/duration.ts';
import type { DeployPort, DeployRequest } from '../pipeline/ports.ts';
import { authFor } from './auth.ts';
import { dockerMessage } from './build.ts';
import { assessRollout, type RolloutSnapshot, type TaskSnapshot, type UpdateStatus } from './rollout.ts';

const POLL_MS = 200;
const MAX_SEQUENCE_RETRIES = 5;

interface ServiceInfo {
  ID: string;
  Version: { Index: number };
  Spec: Record<string, any>;
  UpdateStatus?: UpdateStatus;
}

/**
 * Updates a swarm service to a pinned image and watches the rollout until it has
 * truly converged or truly failed. Swarm's own defaults (stop-first, pause on
 * failure) cause downtime and stalls, so the pipeline's rollout settings are written
 * into the service spec with every update.
 */
export class SwarmDeployer implements DeployPort {
  readonly #docker: Docker;
  readonly #registries: RegistryConfig[];
  constructor(docker: Docker, registries: RegistryConfig[]) {
    this.#docker = docker;
    this.#registries = registries;
  }

  async deploy(req: DeployRequest): Promise<void> {
    const { log, signal } = req;
    const auth = authFor(this.#registries, req.registry);
    let info = await this.#inspect(req.service);
    const current = info.Spec.TaskTemplate?.ContainerSpec?.Image as string | undefined;
    log(`service ${req.service} currently runs ${current ?? '(no image)'}`);
    const started = Date.now();
    if (req.resumeSince) {
      const resumed = await this.#resume(req, info);
      if (resumed) return;
    }
    const previousStartedAt = info.UpdateStatus?.StartedAt;
    for (let attempt = 1; ; attempt++) {
      const spec = withImage(info.Spec, req.image, req.settings);
      try {
        await this.#docker.getService(info.ID).update(auth as never, { _query: { version: info.Version.Index }, _body: spec, abortSignal: signal } as never);
        break;
      } catch (err) {
        const message = dockerMessage(err);
        // Someone else changed the service between our inspect and update: re-read and retry.
        if (/update out of sequence/.test(message) && attempt < MAX_SEQUENCE_RETRIES) {
          log(`service changed while updating (attempt ${attempt}); re-reading and retrying`);
          info = await this.#inspect(req.service);
          continue;
        }
        throw new DeployerError('deploy_failed', `updating ${req.service}: ${message}`, { cause: err });
      }
    }
    if (current === req.image) {
      log(`service already specifies ${req.image}; verifying its tasks`);
    }
    await this.#watch(req, info.ID, previousStartedAt, started);
  }

  async #watch(req: DeployRequest, id: string, previousStartedAt: string | undefined, started: number): Promise<void> {
    const { log, signal, settings } = req;
    let lastDetail = '';
    const deadline = started + settings.timeoutMs;
    for (;;) {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
      const snapshot = await this.#snapshot(id, req.image, previousStartedAt, Date.now() - started);
      const verdict = assessRollout(snapshot);
      const detail = verdict.kind === 'failed' ? verdict.reason : verdict.detail;
      if (detail !== lastDetail) {
        log(`${req.service}: ${detail}`);
        lastDetail = detail;
      }
      if (verdict.kind === 'converged') {
        log(`${req.service} converged in ${formatDuration(Date.now() - started)}`);
        return;
      }
      if (verdict.kind === 'failed') {
        for (const e of verdict.taskErrors) log(`${req.service}: task error: ${e}`);
        const why = verdict.taskErrors[0] ? ` (task error: ${verdict.taskErrors[0]})` : '';
        throw new DeployerError('deploy_failed', `${req.service}: ${verdict.reason}${why}`);
      }
      if (Date.now() > deadline) {
        await this.#rollbackAfterTimeout(req, id);
        throw new DeployerError('timed_out', `${req.service}: rollout did not converge within ${formatDuration(settings.timeoutMs)} (${detail})`);
      }
      await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * After the deployer died mid-deploy: if our image is already in the spec, watch
   * that rollout to its end; if swarm rolled it back meanwhile, that is the outcome.
   * Returns false when our update never reached swarm (then update as usual).
   */
  async #resume(req: DeployRequest, info: ServiceInfo): Promise<boolean> {
    const current = info.Spec.TaskTemplate?.ContainerSpec?.Image as string | undefined;
    const status = info.UpdateStatus;
    const since = Date.parse(req.resumeSince!);
    const updatedSince = status?.StartedAt !== undefined && Date.parse(status.StartedAt) >= since - 5_000;
    if (current === req.image) {
      req.log(`${req.service}: our update is in the spec (${status?.State ?? 'no update status'}); watching it`);
      await this.#watch(req, info.ID, undefined, Date.parse(req.resumeSince!));
      return true;
    }
    if (updatedSince && status?.State?.startsWith('rollback')) {
      throw new DeployerError('deploy_failed', `${req.service}: swarm rolled the update back while the deployer was down${status.Message ? `: ${status.Message}` : ''}`);
    }
    req.log(`${req.service}: the interrupted attempt had not updated the service; updating now`);
    return false;
  }

  async #rollbackAfterTimeout(req: DeployRequest, id: string): Promise<void> {
    if (req.settings.failureAction !== 'rollback') return;
    try {
      const info = (await this.#docker.getService(id).inspect()) as ServiceInfo;
      req.log(`${req.service}: timed out; asking swarm to roll back to the previous spec`);
      await this.#docker.getService(id).update(authFor(this.#registries, req.registry) as never, {
        _query: { version: info.Version.Index, rollback: 'previous' },
        _body: info.Spec,
      } as never);
    } catch (err) {
      req.log(`${req.service}: rollback request failed: ${dockerMessage(err)}`);
    }
  }

  async #snapshot(id: string, target: string, previousStartedAt: string | undefined, elapsedMs: number): Promise<RolloutSnapshot> {
    const [info, tasks] = await Promise.all([
      this.#docker.getService(id).inspect() as Promise<ServiceInfo>,
      this.#docker.listTasks({ filters: { service: [id] } }) as Promise<Record<string, any>[]>,
    ]);
    return {
      updateStatus: info.UpdateStatus,
      previousStartedAt,
      tasks: tasks.map(toTaskSnapshot),
      target,
      replicas: info.Spec.Mode?.Replicated ? Number(info.Spec.Mode.Replicated.Replicas ?? 1) : undefined,
      elapsedMs,
    };
  }

  async #inspect(name: string): Promise<ServiceInfo> {
    let info: ServiceInfo;
    try {
      info = (await this.#docker.getService(name).inspect()) as ServiceInfo;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) throw new DeployerError('service_missing', `service "${name}" does not exist on this swarm`);
      throw new DeployerError('docker_unavailable', `inspecting service ${name}: ${dockerMessage(err)}`, { retryable: true, cause: err });
    }
    // The API also resolves ID prefixes: "www" could match another service's ID.
    if (info.Spec?.Name !== name) throw new DeployerError('service_missing', `service "${name}" does not exist on this swarm`);
    return info;
  }
}

/** A copy of the spec with the new image and the pipeline's rollout settings. */
export function withImage(spec: Record<string, any>, image: string, settings: DeploySettings): Record<string, any> {
  const next = structuredClone(spec);
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
