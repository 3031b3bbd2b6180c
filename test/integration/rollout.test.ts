import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { runLog } from '../helpers/runs.ts';
import { createWorld, deployCommit, disposeQueues, type World } from '../helpers/world.ts';
import { siteFiles, type SiteRepo } from '../support/site.ts';
import { dockerCli, removeTestResources, serviceContents, serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/rollout';

/**
 * Every deploy ends as succeeded, rolled_back (previous version verified serving),
 * timed_out (then rolled back by the deployer) or failed, per service; a failing
 * service in a fleet brings the others back too.
 */
describe('rollout outcomes on the real swarm', () => {
  let repo: SiteRepo;
  let seedRef: string;
  let config: Config;
  let daemon: Daemon;
  let url: string;
  const svc = { healthy: '', stuck: '', fleet1: '', fleet2: '' };

  let world: World;

  beforeAll(async () => {
    // The previous version carries a marker file that fleet2's health check requires.
    world = await createWorld({
      name: 'r',
      seed: { ...siteFiles('previous\n'), 'www/old-marker': 'x' },
      services: [{ prefix: 'r-healthy', healthcheck: true }, 'r-fleet1', { prefix: 'r-fleet2', healthcheck: 'test -f /www/old-marker || exit 1' }],
    });
    ({ repo, seedRef } = world);
    [svc.healthy, svc.fleet1, svc.fleet2] = world.services as [string, string, string];
    svc.stuck = uniqueName('r-stuck');
    // A new task that never finishes starting: its health check hangs unless the previous
    // version's marker file is there. (A task that can never be *placed*, e.g. start-first
    // with a host-mode port on one node, is now refused up front by the placement
    // pre-check: verify-placement.test.ts.)
    await dockerCli([
      'service', 'create', '--detach', '--quiet', '--name', svc.stuck, '--with-registry-auth', '--init', '--label', 'deployer.test=1',
      '--health-cmd', 'test -f /www/old-marker || sleep 600', '--health-interval', '1s', '--health-timeout', '10m', '--health-retries', '1',
      '--stop-grace-period', '2s', seedRef,
    ], { registry: world.registry });
    const image = world.image;
    const fast = { monitor: '2s', timeout: '60s' };
    config = testConfig({
      registry: world.registryConfig,
      pipelines: [
        { name: 'healthy', repo: REPO, url: repo.url, branch: 'healthy', image, tag: 'healthy', services: [svc.healthy], deploy: fast },
        { name: 'stuck', repo: REPO, url: repo.url, branch: 'stuck', image, tag: 'stuck', services: [svc.stuck], deploy: { monitor: '1s', timeout: '8s' } },
        { name: 'fleet', repo: REPO, url: repo.url, branch: 'fleet', image, tag: 'fleet', services: [svc.fleet1, svc.fleet2], deploy: fast },
      ],
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    url = daemon.url!;
    await waitForContent(svc.healthy, 'previous\n', 60_000);
  });

  afterAll(async () => {
    await daemon?.close();
    if (config) await disposeQueues(config);
    await removeTestResources([svc.stuck]).catch(() => undefined);
    await world?.dispose();
  });

  const deployTo = (branch: string, files: Record<string, string | null>) => deployCommit(url, world, REPO, files, branch, branch);

  it('a container that runs but fails its health check → rolled_back, previous verified serving', async () => {
    // Serves nothing: httpd on another port, so the health check on 8080 fails.
    const files = { ...siteFiles('unhealthy\n'), Dockerfile: siteFiles('').Dockerfile!.replace('"-p","8080"', '"-p","8081"') };
    const run = await deployTo('healthy', files);
    expect(run.status).toBe('rolled_back');
    expect(run.deploys).toHaveLength(1);
    expect(run.deploys[0]).toMatchObject({ service: svc.healthy, outcome: 'rolled_back', previousImage: seedRef, image: seedRef });
    expect(run.error).toMatch(/rolled back/);
    expect(await serviceImage(svc.healthy)).toBe(seedRef);
    expect(await serviceContents(svc.healthy)).toEqual(['previous\n']);
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'healthy');
    expect(p.deployed).toBeNull(); // the deployment record only advances on success
  });

  it('a task that never becomes ready → timed_out within the configured timeout, then rolled back', async () => {
    const started = Date.now();
    const run = await deployTo('stuck', siteFiles('never scheduled\n'));
    expect(run.status).toBe('failed');
    expect(run.deploys[0]).toMatchObject({ service: svc.stuck, outcome: 'timed_out', image: seedRef });
    expect(run.deploys[0].message).toMatch(/did not converge within 8\.0s/);
    const deployStage = run.stages.find((s: any) => s.name === 'deploy');
    expect(Date.parse(deployStage.finishedAt) - Date.parse(deployStage.startedAt)).toBeLessThan(8_000 + 120_000);
    expect(Date.now() - started).toBeLessThan(200_000);
    expect(await serviceImage(svc.stuck)).toBe(seedRef);
    expect(await runLog(url, run.id)).toMatch(/starting/);
  });

  it('two services, the second fails → both end on the previous digest', async () => {
    const run = await deployTo('fleet', siteFiles('fleet new\n'));
    expect(run.status).toBe('rolled_back');
    expect(run.deploys.map((d: any) => [d.service, d.outcome])).toEqual([
      [svc.fleet1, 'succeeded'],
      [svc.fleet2, 'rolled_back'],
      [svc.fleet1, 'rolled_back'],
    ]);
    expect(await (await fetch(`${url}/runs/${run.id}`, AUTH)).text()).toMatch(/<h2>Services<\/h2>[\s\S]*rolled_back/);
    expect(await serviceImage(svc.fleet1)).toBe(seedRef);
    expect(await serviceImage(svc.fleet2)).toBe(seedRef);
    await waitForContent(svc.fleet1, 'previous\n', 30_000);
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'fleet');
    expect(p.deployed).toBeNull();
  });
});
