import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunOutcome } from '../../src/pipeline/runner.ts';
import { queueNamesOf, type RunJobData } from '../../src/queue/run-queue.ts';
import { AUTH_HEADER } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { slowBuildFiles } from '../helpers/site-stage.ts';
import { waitFor } from './helpers.ts';

const REPO = 'acme/storm';
/** Concurrent rebuild requests: the issue's 1,000 scaled to what CI affords; the race is the same. */
const REBUILDS = 200;

/**
 * Issue #11, item 3: reconcile used to snapshot the queued runs, await Redis per run,
 * and queue again on the snapshot's status — so runs superseded (or cancelled) during
 * those awaits, whose jobs had just been removed for that reason, were revived and built.
 * Here a storm of concurrent rebuilds (some cancelled while waiting) runs against a real
 * daemon, Redis and Docker while reconcile runs back to back with no grace period. What
 * the worker did is read from BullMQ's own record of each job (its return value), not
 * from the store, which refuses events of finished runs and so would hide a stray build.
 */
describe('reconcile never revives a superseded or cancelled run (rebuild storm, real daemon)', () => {
  let d: WorldDeployer | undefined;
  beforeAll(async () => {
    d = await startWorldDeployer({
      world: { name: 'storm' },
      pipelines: (w) => [{ name: 'site', repo: REPO, url: w.repo.url, image: w.image, tag: 'live', services: [] }],
    });
    // The first build has a slow step (later builds of the commit take it from the cache):
    // every request of the storm is answered while the first run still builds.
    await d.world.repo.commit(slowBuildFiles('storm\n', 5).files, 'storm');
  });
  afterAll(() => d?.close());

  it(`${REBUILDS} concurrent rebuilds: at most two builds; every run recorded superseded or cancelled was never built`, async () => {
    const { url, daemon, config } = d!;
    const scheduler = daemon.scheduler!;
    const store = daemon.store!;
    const headers = { ...AUTH_HEADER, 'content-type': 'application/json' };
    const cancelled: string[] = [];
    let answered = 0;
    const requests = Promise.all(
      Array.from({ length: REBUILDS }, async (_, i) => {
        const res = await fetch(`${url}/api/pipelines/site/rebuild`, { method: 'POST', headers, body: '{}' });
        answered++;
        expect(res.status).toBe(202);
        const { run } = (await res.json()) as { run: string };
        if (i % 10 === 5) {
          // A cancel while it waits (it may already be superseded: then it is refused, 409).
          const c = await fetch(`${url}/api/runs/${run}/cancel`, { method: 'POST', headers, body: '{}' });
          if (c.status === 200 || c.status === 202) cancelled.push(run);
        }
        return run;
      }),
    );
    // Reconcile back to back while the storm lasts, with no grace for fresh runs: every
    // pass spans many supersedes and cancels.
    let passes = 0;
    let stormOver = false;
    void requests.finally(() => (stormOver = true));
    while (!stormOver) {
      await scheduler.reconcile({ graceMs: 0 });
      passes++;
      // A pass with nothing to look at never leaves the microtask queue: let I/O in.
      await new Promise((r) => setImmediate(r));
    }
    const ids = await requests;
    expect(answered).toBe(REBUILDS);
    expect(passes).toBeGreaterThan(0);
    // Then until every run has ended (reconcile still running: it is what could revive one).
    await waitFor('every run to end', async () => {
      await scheduler.reconcile({ graceMs: 0 });
      return store.runsWithStatus(['queued', 'running']).length === 0 ? true : undefined;
    }, 170_000, 200);

    const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue<RunJobData, RunOutcome>(queueNamesOf(config, 'site').run, { connection: redis, prefix: config.redisPrefix });
    try {
      // Every job is finished (none waiting or held by the worker).
      await waitFor('the queue to drain', async () => {
        const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((n) => n === 0) ? true : undefined;
      }, 60_000, 200);
      const jobs = await queue.getJobs(['completed', 'failed'], 0, -1);
      const ran = jobs.filter((j) => j.returnvalue?.status === 'succeeded' || j.returnvalue?.status === 'failed' || j.failedReason);
      const runs = ids.map((id) => store.getRun(id)!);
      const byStatus = (s: string) => runs.filter((r) => r.status === s).map((r) => r.id);
      // At most two builds: the one that started first, and the newest.
      expect(ran.length, `jobs that ran: ${ran.map((j) => `${j.id}:${j.returnvalue?.status ?? j.failedReason}`).join(', ')}`).toBeLessThanOrEqual(2);
      expect(byStatus('succeeded').length).toBeGreaterThanOrEqual(1);
      expect(byStatus('succeeded').length + byStatus('superseded').length + byStatus('cancelled').length).toBe(REBUILDS);
      // A job that ran all its stages belongs to a run the store says succeeded (or failed).
      for (const j of ran) expect(['succeeded', 'failed']).toContain(store.statusOf(j.id!));
      // Every run recorded superseded or cancelled: its job, if it ever reached the worker,
      // ended before building, and its stages never ran.
      const ended = new Set([...byStatus('superseded'), ...byStatus('cancelled')]);
      for (const j of jobs) {
        if (!ended.has(j.id!)) continue;
        expect(['superseded', 'cancelled'], `job of ${store.getRun(j.id!)!.status} run ${j.id} returned ${JSON.stringify(j.returnvalue)}`).toContain(j.returnvalue?.status);
      }
      for (const id of ended) {
        const run = store.getRun(id)!;
        if (run.status === 'superseded') {
          // Superseded: never started, no build output.
          expect(run.stages.every((s) => s.startedAt === null), `stages of superseded run ${id}`).toBe(true);
          expect(store.logChunksAfter(id, 0, 1000).map((c) => c.text).join('')).not.toMatch(/Step|#\d+ |FROM/);
        } else {
          // Cancelled: a cancel may reach a run its worker already started; it is then
          // stopped, never pushed or deployed.
          expect(run.stages.filter((s) => s.name !== 'fetch').every((s) => s.status !== 'succeeded'), `stages of cancelled run ${id}`).toBe(true);
        }
      }
      for (const id of cancelled) expect(['cancelled', 'superseded', 'succeeded']).toContain(store.statusOf(id));
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });
});
