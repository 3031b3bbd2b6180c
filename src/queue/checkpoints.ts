import type { Redis } from 'ioredis';
import type { CheckpointPort, RunCheckpoint } from '../pipeline/runner.ts';

const TTL_S = 7 * 24 * 3600;

/** Run checkpoints in Redis, so a run retried on another worker can resume its deploy. */
export class RedisCheckpoints implements CheckpointPort {
  readonly #redis: Redis;
  readonly #prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }
  async load(runId: string): Promise<RunCheckpoint | undefined> {
    const json = await this.#redis.get(this.#key(runId));
    return json ? (JSON.parse(json) as RunCheckpoint) : undefined;
  }
  async save(runId: string, checkpoint: RunCheckpoint): Promise<void> {
    await this.#redis.set(this.#key(runId), JSON.stringify(checkpoint), 'EX', TTL_S);
  }
  async clear(runId: string): Promise<void> {
    await this.#redis.del(this.#key(runId));
  }
  #key(runId: string): string {
    return `${this.#prefix}:checkpoint:${runId}`;
  }
}
