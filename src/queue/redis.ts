import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/** The process's Redis connections: made here (the one place ioredis is constructed), closed together. */
export interface RedisConnections {
  connect(extra: RedisOptions): Redis;
  disconnectAll(): void;
}

export function connectRedis(url: string, log: Logger): RedisConnections {
  const all: Redis[] = [];
  return {
    connect(extra) {
      const r = new Redis(url, { lazyConnect: false, ...extra });
      // Connection errors repeat on every retry while Redis is away: debug, not error.
      r.on('error', (err) => log.debug({ err }, 'redis connection error'));
      all.push(r);
      return r;
    },
    disconnectAll() {
      for (const r of all) r.disconnect();
    },
  };
}

/** Resolves once `redis` is ready, or after `ms` (a Redis that is down does not stop start-up). */
export function waitUntilReady(redis: Redis, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (redis.status === 'ready') return resolve();
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}
