import { createHash } from 'node:crypto';
import type { Config, PipelineConfig } from '../config/types.ts';

/**
 * What a pipeline's jobs may only be run with: this deployer's instance name and the
 * pipeline's whole config (repository, branch, build, image, services and their
 * engines, rollout settings). Two deployers sharing a Redis prefix and a pipeline name
 * get different fingerprints unless they are configured alike, and so different
 * queues: a worker never runs another deployer's job with its own config. Secrets
 * print as "[secret]", so they never enter it.
 */
export function pipelineFingerprint(config: Pick<Config, 'instance'>, pipeline: PipelineConfig): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ instance: config.instance, pipeline }));
  return hash.digest('hex').slice(0, 12);
}
