import type { Redis } from 'ioredis';

/**
 * "Never deploy an older commit over a newer success", for runs of one queue: the id
 * of the newest run that succeeded is kept in Redis (run ids sort by creation), set
 * only forward by a small script, and checked before a run starts. Only after a crash
 * can an older run start after a newer one finished (the newer job was free while the
 * dead worker's lock expired); this catches that, whatever the queue's history holds.
 */
const SET_IF_NEWER = `local cur = redis.call('GET', KEYS[1])
if (not cur) or cur < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return 0`;

export class NewestSuccess {
  readonly #redis: Redis;
  readonly #prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  /** The newest succeeded run of `queue` when it is newer than `runId`. */
  async newerThan(queue: string, runId: string): Promise<string | undefined> {
    const newest = await this.#redis.get(this.#key(queue));
    return newest !== null && newest > runId ? newest : undefined;
  }

  async record(queue: string, runId: string): Promise<void> {
    await this.#redis.eval(SET_IF_NEWER, 1, this.#key(queue), runId);
  }

  #key(queue: string): string {
    return `${this.#prefix}:${queue}:newest-success`;
  }
}
