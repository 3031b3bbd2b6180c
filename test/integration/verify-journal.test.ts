import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { servicesToRestore } from '../../src/pipeline/fleet-journal.ts';
import { RedisFleetJournal } from '../../src/queue/checkpoints.ts';

/**
 * Issue #15, item 6 (storage half): the fleet journal in real Redis. What a resumed
 * attempt must find: every service a killed attempt began updating, with the image it
 * ran BEFORE (first write wins), in order.
 */
describe('fleet journal in Redis', () => {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const prefix = `test-journal-${randomBytes(6).toString('hex')}`;
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('keeps the first previous image of a service, across attempts, and lists services in update order', async () => {
    const killed = new RedisFleetJournal(redis, prefix);
    await killed.begin('run1', 'www', 'r/x:live@sha256:old-www');
    await killed.mark('run1', 'www', 'updated');
    await killed.begin('run1', 'api', 'r/x:live@sha256:old-api');
    // The worker dies here. A new attempt (another process) resumes: api's spec now holds
    // the NEW image, and that is what the resumed attempt would see as "previous".
    const resumed = new RedisFleetJournal(redis, prefix);
    const again = await resumed.begin('run1', 'api', 'r/x:live@sha256:NEW');
    expect(again.previousImage).toBe('r/x:live@sha256:old-api');
    const entries = await resumed.entries('run1');
    expect(entries.map((e) => [e.service, e.previousImage, e.state, e.seq])).toEqual([
      ['www', 'r/x:live@sha256:old-www', 'updated', 0],
      ['api', 'r/x:live@sha256:old-api', 'updating', 1],
    ]);
    // api fails on resume: www, updated by the killed attempt, must be restored.
    expect(servicesToRestore(entries, 'api').map((e) => [e.service, e.previousImage])).toEqual([['www', 'r/x:live@sha256:old-www']]);
    await resumed.mark('run1', 'www', 'restored');
    expect(servicesToRestore(await resumed.entries('run1'), 'api')).toEqual([]);
    expect(await redis.ttl(`${prefix}:journal:run1`)).toBeGreaterThan(0);
    await resumed.clear('run1');
    expect(await resumed.entries('run1')).toEqual([]);
  });

  it('restores newest first and skips services that had no image', () => {
    const e = (service: string, seq: number, previousImage: string | null = `p-${service}`) => ({ service, previousImage, state: 'updated' as const, seq, at: '' });
    expect(servicesToRestore([e('a', 0), e('b', 1, null), e('c', 2), e('d', 3)], 'd').map((x) => x.service)).toEqual(['c', 'a']);
  });
});
