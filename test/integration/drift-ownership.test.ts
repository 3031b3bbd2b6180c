import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { queueName } from '../../src/queue/run-queue.ts';
import { testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, siteFiles, type SiteRepo } from '../support/site.ts';
import {
  buildAndPushSeed, cleanupLeftovers, createTestNetwork, createTestService, dockerCli, removeTestResources, serviceImage, uniqueName, waitForContent,
} from '../support/swarm.ts';

const REPO = 'acme/drift';

describe('drift and ownership (real swarm)', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;
  let network: string;
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

  beforeAll(async () => {
    await cleanupLeftovers();
    registry = await startRegistry({ auth: true });
    repo = await createSiteRepo();
    network = uniqueName('d-net');
    service = uniqueName('d-www');
    const imageRepo = uniqueName('d-site');
    await createTestNetwork(network);
    seedRef = (await buildAndPushSeed(registry, imageRepo, 'seed\n')).ref;
    await createTestService({ name: service, image: seedRef, network, registry });
    configs.push(configFor('deployer-one', '1s', imageRepo));
    daemons.push(await startDaemon(configs[0]!, { http: true, worker: true, port: 0 }));
    url = daemons[0]!.url!;
  });

  afterAll(async () => {
    for (const d of daemons) await d.close();
    const redis = new Redis(configs[0]!.redisUrl, { maxRetriesPerRequest: null });
    for (const c of configs) {
      const q = new Queue(queueName('site'), { connection: redis, prefix: c.redisPrefix });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
      const keys = await redis.keys(`${c.redisPrefix}:*`);
      if (keys.length) await redis.del(...keys);
    }
    redis.disconnect();
    await removeTestResources([service, network]).catch(() => undefined);
    await registry?.stop();
    await repo?.cleanup();
  });

  const deploy = async (baseUrl: string, content: string) => {
    const sha = await repo.commit(siteFiles(content), content.trim());
    const res = await deliver(baseUrl, pushPayload(REPO, 'main', sha));
    return waitForRun(baseUrl, res.body.runs[0]);
  };
  const pipeline = async () => (await (await fetch(`${url}/api/pipelines/site`)).json());

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
    expect(await (await fetch(`${url}/`)).text()).toContain('drift');

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
