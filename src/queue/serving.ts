import type { Redis } from 'ioredis';
import type { ServingRecord } from '../pipeline/run-context.ts';

/**
 * What serves, per pipeline queue, as the workers last deployed it: the commit and the
 * run, written when a run that deployed succeeds (a rollback's too: it serves then).
 * The descent check (src/pipeline/descent.ts) reads it before building and again before
 * deploying, so a worker sees a deploy another worker finished a moment ago. The store
 * keeps the full history; this is the one fact workers need, where they can read it.
 */
export class ServingCommits {
  readonly #redis: Redis;
  readonly #prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async load(queue: string): Promise<ServingRecord | undefined> {
    const raw = await this.#redis.get(this.#key(queue));
    if (raw === null) return undefined;
    try {
      const v = JSON.parse(raw) as Partial<ServingRecord>;
      return typeof v.commit === 'string' && typeof v.runId === 'string' ? { commit: v.commit, runId: v.runId } : undefined;
    } catch {
      return undefined;
    }
  }

  /** The deploy that finished last is what serves, whatever order the runs were made in. */
  async record(queue: string, serving: ServingRecord): Promise<void> {
    await this.#redis.set(this.#key(queue), JSON.stringify(serving));
  }

  #key(queue: string): string {
    return `${this.#prefix}:${queue}:serving`;
  }
}
