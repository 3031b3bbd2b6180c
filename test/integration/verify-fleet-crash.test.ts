import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { AUTH, testConfig, testEnv } from '../helpers/config.ts';
import { spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { createWorld, disposeQueues, pushCommit, type World } from '../helpers/world.ts';
import { siteFiles } from '../support/site.ts';
import { serviceImage } from '../support/swarm.ts';

const REPO = 'acme/fleet-crash';

/**
 * Issue #15, item 6, end to end: a two-service fleet, the worker a real process killed
 * with SIGKILL once service 1 converged on the new image and service 2's update reached
 * swarm — service 2's new image fails its health check. The retried attempt (a fresh
 * worker process) must find, in the fleet journal, that service 1 was updated by the
 * dead attempt and what it ran before, and restore it: both services end on the
 * previous digest and the run shows both restores.
 */
describe('fleet all-or-none across a worker killed mid-deploy (SIGKILL, real swarm)', () => {
  let world: World;
  let config: Config;
  let http: Daemon;
  let worker: DeployerProcess | undefined;
  let s1: string;
  let s2: string;

  beforeAll(async () => {
    // The previous version carries a marker file service 2's health check requires.
    world = await createWorld({
      name: 'fc',
      seed: { ...siteFiles('previous\n'), 'www/old-marker': 'x' },
      services: [{ prefix: 'fc-one', healthcheck: true }, { prefix: 'fc-two', healthcheck: 'test -f /www/old-marker || exit 1' }],
    });
    [s1, s2] = world.services as [string, string];
    config = testConfig({
      logLevel: 'info',
      deadAfter: '6s', // the killed worker's job is taken again after its lock expires
      registry: world.registryConfig,
      pipelines: [{ name: 'fleet', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [s1, s2], deploy: { monitor: '2s', timeout: '60s' } }],
    });
    // The store side in this process; the worker as a process of its own, to be killed.
    http = await startDaemon(config, { http: true, worker: false, port: 0 });
  });

  afterAll(async () => {
    await worker?.kill('SIGKILL');
    await http?.close();
    if (config) await disposeQueues(config);
    await world?.dispose();
  });

  const startWorker = async () => {
    worker = await spawnDeployer(['worker', '--config', config.file], testEnv(world.registry.password), 'worker started');
  };

  it('the resumed attempt restores the service the killed one had updated', async () => {
    const url = http.url!;
    await startWorker();
    const { runId } = await pushCommit(url, world, REPO, siteFiles('new, without the marker\n'), 'fleet crash');
    await waitUntil('the run has pushed its image', async () => Boolean((await (await fetch(`${url}/api/runs/${runId}`, AUTH)).json()).image), 120_000, 100);
    const image = (await (await fetch(`${url}/api/runs/${runId}`, AUTH)).json()).image.ref as string;
    // Service 1 converged (the run moved on to service 2) and service 2's update reached swarm.
    await waitUntil('service 2 is being updated', async () => (await serviceImage(s2)) === image, 120_000, 50);
    expect(await serviceImage(s1)).toBe(image);
    expect(await worker!.kill('SIGKILL')).toBe(-1);

    await startWorker();
    const run = await waitForRun(url, runId, 150_000);
    expect(run.attempts).toBe(2);
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(new RegExp(`${s2} rolled back`));
    // Both services end on the previous digest.
    expect(await serviceImage(s1)).toBe(world.seedRef);
    expect(await serviceImage(s2)).toBe(world.seedRef);
    // The run shows both restores: service 2's own rollback, and service 1 restored from the journal.
    const byService = Object.fromEntries(run.deploys.filter((d: any) => d.outcome === 'rolled_back').map((d: any) => [d.service, d]));
    expect(Object.keys(byService).sort()).toEqual([s1, s2].sort());
    expect(byService[s1].image).toBe(world.seedRef);
    const log = await runLog(url, runId);
    expect(log).toMatch(/resuming: watching/);
    expect(log).toContain(`rolling ${s1} back to ${world.seedRef} so all services serve the same version`);
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'fleet');
    expect(p.deployed).toBeNull();
  });
});
