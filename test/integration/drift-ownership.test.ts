import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import type { TestRegistry } from '../support/registry.ts';
import { siteFiles, type SiteRepo } from '../support/site.ts';
import { dockerCli, serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/drift';

describe('drift and ownership (real swarm)', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;
  let service: string;
  let seedRef: string;
  const configs: Config[] = [];
  const daemons: Daemon[] = [];
  let url: string;

  const configFor = (instance: string, driftInterval: string, imageRepo: string) =>
    testConfig({
      instance,
      driftInterval,
      registry: { host: registry.host, username: registry.username, password: registry.password },
      pipelines: [{ name: 'site', repo: REPO, url: repo.url, image: `${registry.host}/${imageRepo}`, tag: 'live', services: [service], deploy: { monitor: '1s', timeout: '60s' } }],
    });

  let world: World;

  beforeAll(async () => {
    world = await createWorld({ name: 'd', services: ['d-www'] });
    ({ registry, repo, seedRef } = world);
    service = world.services[0]!;
    configs.push(configFor('deployer-one', '1s', world.imageRepo));
    daemons.push(await startDaemon(configs[0]!, { http: true, worker: true, port: 0 }));
    url = daemons[0]!.url!;
  });

  afterAll(async () => {
    for (const d of daemons) await d.close();
    for (const c of configs) await disposeQueues(c);
    await world?.dispose();
  });

  const deploy = async (baseUrl: string, content: string) => {
    const sha = await repo.commit(siteFiles(content), content.trim());
    const res = await deliver(baseUrl, pushPayload(REPO, 'main', sha));
    return waitForRun(baseUrl, res.body.runs[0]);
  };
  const pipeline = async () => (await (await fetch(`${url}/api/pipelines/site`, AUTH)).json());

  it('labels the service with its owner, reports drift made by hand, and logs what the next deploy replaces', async () => {
    const a = await deploy(url, 'A\n');
    expect(a.status).toBe('succeeded');
    const labels = JSON.parse(await dockerCli(['service', 'inspect', '--format', '{{json .Spec.Labels}}', service]));
    expect(labels).toMatchObject({ 'deployer.instance': 'deployer-one', 'deployer.pipeline': 'site' });
    expect((await pipeline()).drift).toBeNull();

    await dockerCli(['service', 'update', '--detach', '--quiet', '--with-registry-auth', '--image', seedRef, service], { registry });
    const deadline = Date.now() + 20_000;
    let drift = null;
    while (!drift && Date.now() < deadline) {
      drift = (await pipeline()).drift;
      if (!drift) await new Promise((r) => setTimeout(r, 250));
    }
    expect(drift).toEqual([{ service, recorded: a.image.ref, actual: seedRef, detectedAt: expect.any(String) }]);
    expect(await (await fetch(`${url}/`, AUTH)).text()).toContain('drift');

    const b = await deploy(url, 'B\n');
    expect(b.status).toBe('succeeded');
    expect(await runLog(url, b.id)).toContain(`drift: ${service} was changed outside the deployer (recorded ${a.image.ref}); this deploy replaces ${seedRef}`);
    await waitForContent(service, 'B\n', 30_000);
    const after = Date.now() + 10_000;
    while ((await pipeline()).drift !== null && Date.now() < after) await new Promise((r) => setTimeout(r, 250));
    expect((await pipeline()).drift).toBeNull();
  });

  it('a second deployer targeting the same service refuses with a clear error instead of fighting', async () => {
    const before = await serviceImage(service);
    configs.push(configFor('deployer-two', '60s', uniqueName('d-other')));
    const other = await startDaemon(configs[1]!, { http: true, worker: true, port: 0 });
    daemons.push(other);
    const run = await deploy(other.url!, 'intruder\n');
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/is managed by deployer "deployer-one" pipeline "site", not "deployer-two"/);
    expect(await serviceImage(service)).toBe(before);
    await waitForContent(service, 'B\n', 10_000);
  });
});
