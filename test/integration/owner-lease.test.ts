import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import type { LifecycleEvent } from '../../src/pipeline/lifecycle.ts';
import { StreamReporter, eventStreamKey } from '../../src/queue/event-bus.ts';
import { LEASE_TTL_MS, OwnerLease } from '../../src/queue/owner-lease.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { waitUntil } from '../helpers/wait.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'acme/lease';
const AT = () => new Date().toISOString();

/**
 * Two store-side processes on one store, as during a start-first update of the
 * deployer's own service: both answer HTTP and accept webhooks, one owns the store
 * (applies worker events, reconciles), and ownership passes when the owner stops.
 * Real Redis, real SQLite, real HTTP; the worker's part is played by a StreamReporter.
 */
describe('store ownership across two deployer processes on one store', () => {
  let config: Config;
  let a: Daemon;
  let b: Daemon;
  let redis: Redis;
  const appliedBy = { a: [] as LifecycleEvent[], b: [] as LifecycleEvent[] };
  let leaseKey: string;

  /** Plays a worker reporting `runId` started. */
  async function started(runId: string, worker: string): Promise<void> {
    const reporter = new StreamReporter(redis, config.redisPrefix, undefined, { stream: eventStreamKey(config.redisPrefix, a.store!.id) });
    reporter.emit({ type: 'run.started', runId, at: AT(), worker, attempt: 1 });
    await reporter.flush();
  }

  beforeAll(async () => {
    config = testConfig({ pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/lease', services: [] }] });
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    a = await startDaemon(config, { http: true, worker: false, port: 0 });
    b = await startDaemon(config, { http: true, worker: false, port: 0 });
    a.events!.on('applied', (e: LifecycleEvent[]) => appliedBy.a.push(...e));
    b.events!.on('applied', (e: LifecycleEvent[]) => appliedBy.b.push(...e));
    leaseKey = `${config.redisPrefix}:owner:${a.store!.id}`;
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    if (config) await disposeQueues(config);
    await redis?.del(leaseKey);
    redis?.disconnect();
  });

  it('the first owns the store, the second stands by and says so on /healthz (healthy: swarm must see it ready)', async () => {
    expect(a.store!.id).toBe(b.store!.id);
    expect(a.ownership!.held).toBe(true);
    expect(b.ownership!.held).toBe(false);
    expect(await redis.get(leaseKey)).toBe(a.ownership!.token);
    const health = await fetch(`${b.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', store: 'standby' });
    expect(await (await fetch(`${a.url}/healthz`)).json()).toMatchObject({ status: 'ok', store: 'owner' });
  });

  it('a webhook accepted by the standby is a run in the shared store; worker events are applied by the owner', async () => {
    const res = await deliver(b.url!, pushPayload(REPO, 'main', 'b'.repeat(40)));
    expect(res.status).toBe(202);
    const runId = res.body.runs[0] as string;
    expect((await (await fetch(`${a.url}/api/runs/${runId}`, AUTH)).json()).status).toBe('queued');
    await started(runId, 'worker-1');
    await waitUntil('the owner applied run.started', () => appliedBy.a.some((e) => e.runId === runId && e.type === 'run.started'), 10_000);
    expect(appliedBy.b).toEqual([]);
    expect((await (await fetch(`${b.url}/api/runs/${runId}`, AUTH)).json()).status).toBe('running');
  });

  it('the owner stopping gives the lease back at once; the standby takes over and applies what follows', async () => {
    const closing = a.close();
    await closing;
    // Given back, not left to expire: nobody holds it, or the successor already does.
    expect([null, b.ownership!.token]).toContain(await redis.get(leaseKey));
    await waitUntil('the standby took the store over', () => b.ownership!.held, 10_000);
    expect(await redis.get(leaseKey)).toBe(b.ownership!.token);
    expect(await (await fetch(`${b.url}/healthz`)).json()).toMatchObject({ store: 'owner' });

    const res = await deliver(b.url!, pushPayload(REPO, 'main', 'c'.repeat(40)));
    const runId = res.body.runs[0] as string;
    await started(runId, 'worker-2');
    await waitUntil('the new owner applied run.started', () => appliedBy.b.some((e) => e.runId === runId && e.type === 'run.started'), 10_000);
  });

  it('an owner whose lease another process took (Redis was away past its TTL) stops its duties and stands by', async () => {
    await redis.set(leaseKey, 'someone-else', 'PX', 60_000);
    await waitUntil('b noticed it lost the lease', () => !b.ownership!.held, 10_000);
    expect(await (await fetch(`${b.url}/healthz`)).json()).toMatchObject({ store: 'standby' });
    // The other one goes away: b takes the store back once the key is free.
    await redis.del(leaseKey);
    await waitUntil('b took the store back', () => b.ownership!.held, 10_000);
    const res = await deliver(b.url!, pushPayload(REPO, 'main', 'd'.repeat(40)));
    const runId = res.body.runs[0] as string;
    await started(runId, 'worker-3');
    await waitUntil('b applies events again', () => appliedBy.b.some((e) => e.runId === runId && e.type === 'run.started'), 10_000);
  });

  it('a holder whose renewals stopped (a stalled event loop, a cut connection) stops trusting its lease before the key can expire', async () => {
    const started: string[] = [];
    const lease = new OwnerLease({ redis, prefix: config.redisPrefix, storeId: 'stall-test', log: createLogger('silent'), duties: { start: () => void started.push('start'), stop: async () => void started.push('stop') } });
    try {
      await lease.start();
      expect(lease.held).toBe(true);
      expect(lease.trusted()).toBe(true);
      // Time passes with no renewal (the renewal timer did not get to run).
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + LEASE_TTL_MS - 2_000);
      expect(lease.held).toBe(true); // it has not learned otherwise…
      expect(lease.trusted()).toBe(false); // …but applies nothing until a renewal succeeds
    } finally {
      vi.useRealTimers();
      await lease.close();
    }
    expect(started).toEqual(['start', 'stop']);
    expect(await redis.get(`${config.redisPrefix}:owner:stall-test`)).toBeNull();
  });
});
