import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { withTimeout } from '../lib/timeout.ts';
import { pipelineFingerprint } from './fingerprint.ts';
import { waitUntilReady } from './redis.ts';

/** How often a process says it is alive and looks for others. */
const INTERVAL_MS = 5_000;

interface Presence {
  instance: string;
  fingerprint: string;
  at: number;
}

/**
 * Who else uses this Redis prefix: every deployer process records, per pipeline, the
 * fingerprint of the config it runs it with (`<prefix>:instances`), and says in its log
 * when another deployer runs a pipeline of the same name with a different config. Their
 * jobs stay apart anyway (queues are named by fingerprint); this is for the operator,
 * who most likely meant to give them different prefixes.
 */
export class InstanceRegistry {
  readonly #redis: Redis;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #key: string;
  readonly #mine: Map<string, string>;
  readonly #warned = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> | undefined;

  constructor(redis: Redis, config: Config, log: Logger) {
    this.#redis = redis;
    this.#config = config;
    this.#log = log;
    this.#key = `${config.redisPrefix}:instances`;
    this.#mine = new Map(config.pipelines.map((p) => [p.name, pipelineFingerprint(config, p)]));
  }

  start(): void {
    const tick = () => {
      this.#tick ??= this.check()
        .then(() => undefined)
        .catch((err: unknown) => this.#log.debug({ err }, 'instance check failed'))
        .finally(() => {
          this.#tick = undefined;
        });
    };
    // The connection fails fast (no offline queue): the first look waits until it is up.
    this.#tick = waitUntilReady(this.#redis, 3000).then(() => {
      this.#tick = undefined;
      if (this.#timer) tick();
    });
    this.#timer = setInterval(tick, INTERVAL_MS);
    this.#timer.unref();
  }

  /** Records this process's pipelines and logs each conflict once. Returns the conflicts seen. */
  async check(): Promise<{ pipeline: string; instance: string; fingerprint: string }[]> {
    const now = Date.now();
    const mine = [...this.#mine].flatMap(([pipeline, fingerprint]) => [`${pipeline} ${fingerprint}`, JSON.stringify({ instance: this.#config.instance, fingerprint, at: now } satisfies Presence)]);
    if (mine.length === 0) return [];
    await this.#redis.hset(this.#key, ...mine);
    const all = await this.#redis.hgetall(this.#key);
    const conflicts: { pipeline: string; instance: string; fingerprint: string }[] = [];
    for (const [field, json] of Object.entries(all)) {
      const [pipeline = '', fingerprint = ''] = field.split(' ');
      const own = this.#mine.get(pipeline);
      if (own === undefined || own === fingerprint) continue;
      let other: Presence;
      try {
        other = JSON.parse(json) as Presence;
      } catch {
        continue;
      }
      if (now - other.at > 3 * INTERVAL_MS) {
        // Stopped (or died) a while ago: forgotten after an hour.
        if (now - other.at > 3_600_000) await this.#redis.hdel(this.#key, field);
        continue;
      }
      conflicts.push({ pipeline, instance: other.instance, fingerprint });
      if (this.#warned.has(field)) continue;
      this.#warned.add(field);
      this.#log.warn(
        { pipeline, redisPrefix: this.#config.redisPrefix, other: { instance: other.instance, fingerprint }, mine: { instance: this.#config.instance, fingerprint: own } },
        'another deployer with a different config shares this Redis prefix and pipeline name; each runs only its own jobs (give them different redisPrefix values)',
      );
    }
    return conflicts;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await withTimeout(this.#tick ?? Promise.resolve(), 2000, 'instance check').catch(() => undefined);
    // Other processes of this instance may still run these pipelines: their next tick
    // records them again within seconds.
    await withTimeout(this.#redis.hdel(this.#key, ...[...this.#mine].map(([p, fp]) => `${p} ${fp}`)), 2000, 'instance removal').catch(() => undefined);
  }
}
