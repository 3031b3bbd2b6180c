import type { Redis } from 'ioredis';
import type { FleetJournalPort, JournalEntry, JournalState } from '../pipeline/fleet-journal.ts';
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

/**
 * The fleet journal of a run (src/pipeline/fleet-journal.ts) as a Redis hash, service →
 * entry. `begin` is HSETNX: the first record of a service's previous image wins, so a
 * resumed attempt cannot replace it with the image the killed attempt already deployed.
 */
export class RedisFleetJournal implements FleetJournalPort {
  readonly #redis: Redis;
  readonly #prefix: string;
  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }
  async begin(runId: string, service: string, previousImage: string | null): Promise<JournalEntry> {
    const key = this.#key(runId);
    const entry: JournalEntry = { service, previousImage, state: 'updating', seq: await this.#redis.hlen(key), at: new Date().toISOString() };
    const created = await this.#redis.hsetnx(key, service, JSON.stringify(entry));
    await this.#redis.expire(key, TTL_S);
    if (created === 1) return entry;
    return JSON.parse((await this.#redis.hget(key, service))!) as JournalEntry;
  }
  async mark(runId: string, service: string, state: JournalState): Promise<void> {
    const key = this.#key(runId);
    const json = await this.#redis.hget(key, service);
    if (!json) return;
    await this.#redis.hset(key, service, JSON.stringify({ ...(JSON.parse(json) as JournalEntry), state, at: new Date().toISOString() }));
  }
  async entries(runId: string): Promise<JournalEntry[]> {
    const all = await this.#redis.hgetall(this.#key(runId));
    return Object.values(all).map((j) => JSON.parse(j) as JournalEntry).sort((a, b) => a.seq - b.seq);
  }
  async clear(runId: string): Promise<void> {
    await this.#redis.del(this.#key(runId));
  }
  #key(runId: string): string {
    return `${this.#prefix}:journal:${runId}`;
  }
}
