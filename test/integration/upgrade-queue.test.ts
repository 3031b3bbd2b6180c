import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { queueNamesOf } from '../../src/queue/run-queue.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { siteFiles } from '../support/site.ts';
import { waitForContent } from '../support/swarm.ts';

const REPO = 'acme/upgrade';

/**
 * Upgrading from a release before the fingerprinted queue names (#10): that release
 * queued runs in `pipeline-<name>`, which nothing serves any more. Found by the selfhost
 * upgrade test, where a run in flight at the restart ended "interrupted: its job is no
 * longer in the queue". The old release's job is put back by hand here, in its own
 * shape ({runId, pipeline, commit}), as that release left it, its run started: without
 * the move the run ends failed, "its job is no longer in the queue".
 */
describe('a run queued by a release with the old queue names (real Redis, engine, swarm)', () => {
  let world: World;
  let config: Config;
  let redis: Redis;
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    world = await createWorld({ name: 'upq', services: ['upq-www'] });
    config = testConfig({
      registry: world.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [world.services[0]!], deploy: { monitor: '500ms', timeout: '60s' } }],
    });
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  });

  afterAll(async () => {
    for (const d of daemons) await d.close().catch(() => undefined);
    if (config) {
      const legacy = new Queue('pipeline-site', { connection: redis, prefix: config.redisPrefix });
      await legacy.obliterate({ force: true }).catch(() => undefined);
      await legacy.close();
      await disposeQueues(config);
    }
    redis?.disconnect();
    await world?.dispose();
  });

  it('is moved to this release\'s queue once no old worker holds it, and deploys; another deployer\'s job stays', async () => {
    // The old release's side: the store knows the run, the job sits in the old queue.
    const first = await startDaemon(config, { http: true, worker: false, port: 0 });
    daemons.push(first);
    const sha = await world.repo.commit(siteFiles('queued before the upgrade\n'), 'before the upgrade');
    const runId = (await deliver(first.url!, pushPayload(REPO, 'main', sha))).body.runs[0] as string;
    const current = new Queue(queueNamesOf(config, 'site').run, { connection: redis, prefix: config.redisPrefix });
    const legacy = new Queue('pipeline-site', { connection: redis, prefix: config.redisPrefix });
    try {
      await waitUntil('the run is queued', async () => (await current.getJob(runId)) !== undefined, 10_000);
      // The old release's worker had started it (then stopped with the old release): running.
      const reporter = new StreamReporter(redis, config.redisPrefix);
      reporter.emit({ type: 'run.started', runId, at: new Date().toISOString(), worker: 'old-release', attempt: 1 });
      await reporter.flush();
      await waitUntil('the run is running', async () => (await (await fetch(`${first.url}/api/runs/${runId}`, AUTH)).json()).status === 'running', 10_000);
      await first.close();
      await (await current.getJob(runId))!.remove();
      await legacy.add('run', { runId, pipeline: 'site', commit: sha }, { jobId: runId });
      // An old worker still holds it for a few more seconds (its lock): moving it now
      // would deploy twice at once, so it must wait for the lock to go.
      const lockMs = 5_000;
      await redis.set(`${config.redisPrefix}:pipeline-site:${runId}:lock`, 'old-worker-token', 'PX', lockMs);
      const lockGone = Date.now() + lockMs;
      // Another deployer on this prefix, still on the old release, queued a run of its own.
      await legacy.add('run', { runId: 'another-deployers-run', pipeline: 'site', commit: sha }, { jobId: 'another-deployers-run' });

      // The new release starts (store owner and worker): the run deploys.
      const second = await startDaemon(config, { http: true, worker: true, port: 0 });
      daemons.push(second);
      const run = await waitForRun(second.url!, runId, 120_000);
      expect(run, await runLog(second.url!, runId)).toMatchObject({ status: 'succeeded', commit: sha });
      await waitForContent(world.services[0]!, 'queued before the upgrade\n', 30_000);
      expect(Date.parse(run.stages[0].startedAt)).toBeGreaterThanOrEqual(lockGone - 50);
      // Ours moved; the other deployer's left where its workers look for it.
      expect(await legacy.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed')).toEqual({ wait: 1, active: 0, delayed: 0, completed: 0, failed: 0 });
      expect((await legacy.getJob('another-deployers-run'))?.data).toMatchObject({ runId: 'another-deployers-run' });
      const runs = (await (await fetch(`${second.url}/api/pipelines/site/runs`, AUTH)).json()).runs as { id: string }[];
      expect(runs.map((r) => r.id)).toEqual([runId]);
    } finally {
      await current.close();
      await legacy.close();
    }
  });
});
