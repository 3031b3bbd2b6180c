import { createHash } from 'node:crypto';
import type { Config, PipelineConfig } from '../config/types.ts';

/**
 * What a pipeline's jobs may only be run with: this deployer's instance name and the
 * pipeline's config (repository, branch, build, image, services, rollout settings).
 * Two deployers sharing a Redis prefix and a pipeline name get different fingerprints
 * unless they are configured alike, and so different queues: a worker never runs
 * another deployer's job with its own config.
 *
 * Engine addresses are left out: they say how this process reaches Docker, which is
 * each node's own business (every worker of a stack says unix:///var/run/docker.sock
 * and means its own engine; a worker may reach no manager and hand its deploys over).
 * Secrets print as "[secret]", so they never enter it.
 */
export function pipelineFingerprint(config: Pick<Config, 'instance'>, pipeline: PipelineConfig): string {
  const { targets: _engines, ...what } = pipeline;
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ instance: config.instance, pipeline: what }));
  return hash.digest('hex').slice(0, 12);
}
