import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { testConfig, testEnv, AUTH } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { slowBuildFiles } from '../helpers/site-stage.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { startRegistry } from '../support/registry.ts';
import { createSiteRepo, siteFiles, type SiteRepo } from '../support/site.ts';
import { serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/crash-site';

/**
 * The daemon as a real process, killed with SIGKILL at the worst moments. After a
 * restart no run may stay running or queued forever, and the recorded outcome must be
 * the true one. BullMQ notices the dead worker's job once its lock expires
 * (worker.deadAfter, 8 s here) at the next stall check (4 s).
 */
describe('crash safety (SIGKILL, real processes)', () => {
  let repo: SiteRepo;
  let service: string;
  let config: Config;
  let env: NodeJS.ProcessEnv;
  let daemon: DeployerProcess | undefined;
  let url: string;

  let world: World;

  beforeAll(async () => {
    world = await createWorld({ name: 'c', services: ['c-www'] });
    ({ repo } = world);
    service = world.services[0]!;
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      deadAfter: '8s', // a killed worker's job is picked up after ~8 s + a 4 s stall check
      registry: world.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: repo.url, image: world.image, tag: 'live', services: [service], deploy: { monitor: '8s', timeout: '2m' } }],
    });
    env = testEnv(world.registry.password);
  });

  afterAll(async () => {
    await daemon?.kill('SIGKILL');
    if (config) await disposeQueues(config);
    await world?.dispose();
  });

  const start = async () => {
    daemon = await spawnDeployer(['serve', '--config', config.file], env, 'listening');
  };
  const stage = async (id: string, name: string) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = await (await fetch(`${url}/api/runs/${id}`, AUTH)).json();
      if (run.stages.find((s: any) => s.name === name).status === 'running') return;
      if (Date.now() > deadline) throw new Error(`stage ${name} never ran: ${JSON.stringify(run)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it('killed during build: after restart the run is retried from the start and succeeds', async () => {
    await start();
    const { files } = slowBuildFiles('survived a crash in build\n', 4);
    const sha = await repo.commit(files, 'crash in build');
    const res = await deliver(url, pushPayload(REPO, 'main', sha));
    const id = res.body.runs[0];
    await stage(id, 'build');
    expect(await daemon!.kill('SIGKILL')).toBe(-1);
    await start();
    const run = await waitForRun(url, id, 150_000);
    expect(run.status).toBe('succeeded');
    expect(run.attempts).toBe(2);
    expect(run.commit).toBe(sha);
    await waitForContent(service, 'survived a crash in build\n', 30_000);
    const log = await (await fetch(`${url}/api/runs/${id}/log`, AUTH)).text();
    expect(log).toContain('attempt 2');
  });

  it('killed during deploy: after restart the run resumes watching and records the true outcome', async () => {
    const sha = await repo.commit(siteFiles('survived a crash in deploy\n'), 'crash in deploy');
    const res = await deliver(url, pushPayload(REPO, 'main', sha));
    const id = res.body.runs[0];
    await stage(id, 'deploy');
    // Killed once the update reached swarm (its spec names our image), mid-rollout.
    const pushed = (await (await fetch(`${url}/api/runs/${id}`, AUTH)).json()).image.ref as string;
    await waitUntil('the service update reached swarm', async () => (await serviceImage(service)) === pushed, 30_000, 50);
    await daemon!.kill('SIGKILL');
    await start();
    const run = await waitForRun(url, id, 150_000);
    expect(run.status).toBe('succeeded');
    expect(run.attempts).toBe(2);
    const log = await (await fetch(`${url}/api/runs/${id}/log`, AUTH)).text();
    expect(log).toMatch(/resuming: watching/);
    expect(log.match(/sending build context/g)).toHaveLength(1); // built once, not rebuilt by attempt 2
    expect(await serviceImage(service)).toBe(run.image.ref);
    await waitForContent(service, 'survived a crash in deploy\n', 30_000);
    const [pipeline] = await (await fetch(`${url}/api/pipelines`, AUTH)).json();
    expect(pipeline.deployed.commit).toBe(sha);
  });

  it('a push accepted just before the crash still runs after restart', async () => {
    const { files } = slowBuildFiles('blocker\n', 3);
    const blocker = await deliver(url, pushPayload(REPO, 'main', await repo.commit(files, 'blocker')));
    await stage(blocker.body.runs[0], 'build');
    const sha = await repo.commit(siteFiles('accepted before crash\n'), 'accepted');
    const waiting = (await deliver(url, pushPayload(REPO, 'main', sha))).body.runs[0];
    await daemon!.kill('SIGKILL');
    await start();
    const newest = await waitForRun(url, waiting, 150_000);
    expect(newest.status).toBe('succeeded');
    // The interrupted older run comes back only after its lock expires: by then a newer
    // commit is deployed, and it must not be deployed over it.
    const blocked = await waitForRun(url, blocker.body.runs[0], 150_000);
    expect(blocked.status).toBe('superseded');
    expect(blocked.supersededBy).toBe(waiting);
    expect(await serviceImage(service)).toBe(newest.image.ref);
    await waitForContent(service, 'accepted before crash\n', 30_000);
    expect(await daemon!.kill('SIGTERM')).toBe(0);
  });
});

describe('graceful shutdown (SIGTERM, real processes)', () => {
  it('parks a run that has not reached deploy; it resumes on the next start', async () => {
    const registry = await startRegistry({ auth: true });
    const repo = await createSiteRepo();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const config = testConfig({
      listen: `127.0.0.1:${port}`, logLevel: 'info',
      registry: { host: registry.host, username: registry.username, password: registry.password },
      pipelines: [{ name: 'site', repo: REPO, url: repo.url, image: `${registry.host}/${uniqueName('term')}`, tag: 'live', services: [] }],
    });
    const env = testEnv(registry.password);
    let proc = await spawnDeployer(['serve', '--config', config.file], env, 'listening');
    try {
      const { files } = slowBuildFiles('parked\n', 8);
      const sha = await repo.commit(files, 'parked');
      const id = (await deliver(base, pushPayload(REPO, 'main', sha))).body.runs[0];
      for (;;) {
        const run = await (await fetch(`${base}/api/runs/${id}`, AUTH)).json();
        if (run.stages.find((s: any) => s.name === 'build').status === 'running') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const t0 = Date.now();
      expect(await proc.kill('SIGTERM')).toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000); // the build was stopped, not waited for
      // Back to the queue, not failed: the next start runs it from the beginning.
      proc = await spawnDeployer(['serve', '--config', config.file], env, 'listening');
      const run = await waitForRun(base, id, 120_000);
      expect(run.status).toBe('succeeded');
      expect(run.commit).toBe(sha);
      expect(await (await fetch(`${base}/api/runs/${id}/log`, AUTH)).text()).toContain('parked: the worker is shutting down');
    } finally {
      await proc.kill('SIGTERM');
      await disposeQueues(config);
      await registry.stop();
      await repo.cleanup();
    }
  });
});

describe('Redis outage under a running daemon', () => {
  it('answers 503 while Redis is down and recovers without a restart', async () => {
    const port = await freePort();
    const startRedis = () => {
      const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      return p;
    };
    const ping = async () => {
      const r = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => undefined);
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        r.disconnect();
      }
    };
    let redis = startRedis();
    while (!(await ping())) await new Promise((r) => setTimeout(r, 50));
    const config = testConfig({ redisUrl: `redis://127.0.0.1:${port}`, pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    const { startDaemon } = await import('../../src/daemon.ts');
    const d = await startDaemon(config, { http: true, worker: false, port: 0 });
    try {
      const push = (c: string) => deliver(d.url!, pushPayload(REPO, 'main', c.repeat(40)));
      expect((await push('a')).status).toBe(202);
      redis.kill('SIGKILL');
      await new Promise((r) => redis.on('exit', r));
      expect((await push('b')).status).toBe(503);
      const down = await fetch(`${d.url}/healthz`);
      expect(down.status).toBe(503);
      expect((await down.json()).failing).toContain('redis');
      redis = startRedis();
      while (!(await ping())) await new Promise((r) => setTimeout(r, 50));
      const deadline = Date.now() + 20_000;
      let status = 0;
      while (Date.now() < deadline && status !== 202) {
        status = (await push('c')).status;
        if (status !== 202) await new Promise((r) => setTimeout(r, 500));
      }
      expect(status).toBe(202);
      expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
      // Redis lost its data (no persistence here): the reconcile loop re-queues the accepted run.
    } finally {
      await d.close();
      redis.kill('SIGKILL');
    }
  });
});
