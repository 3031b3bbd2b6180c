import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../../src/config/types.ts';
import { queueNamesOf } from '../../src/queue/run-queue.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, git, siteFiles, type FileMap, type SiteRepo } from '../support/site.ts';
import { buildAndPush, cleanupLeftovers, createTestNetwork, createTestService, removeTestResources, uniqueName } from '../support/swarm.ts';
import { deliver, pushPayload } from './github.ts';
import { waitForRun } from './runs.ts';

export interface ServiceSpec {
  prefix: string;
  healthcheck?: boolean | string;
}

/**
 * What most integration tests deploy into: an htpasswd registry, a git repository of
 * the busybox site, an overlay network, a seed image and swarm services running it.
 * Everything is uniquely named and removed by `dispose()`.
 */
export interface World {
  registry: TestRegistry;
  repo: SiteRepo;
  network: string;
  /** Repository name in the registry (without host). */
  imageRepo: string;
  /** `host/imageRepo`, the pipeline's `image`. */
  image: string;
  seedRef: string;
  services: string[];
  registryConfig: { host: string; username: string; password: string };
  dispose(): Promise<void>;
}

export async function createWorld(opts: { name: string; services?: (string | ServiceSpec)[]; seed?: FileMap }): Promise<World> {
  await cleanupLeftovers();
  const registry = await startRegistry({ auth: true });
  const repo = await createSiteRepo();
  const network = uniqueName(`${opts.name}-net`);
  const imageRepo = uniqueName(`${opts.name}-site`);
  const specs = (opts.services ?? []).map((s) => (typeof s === 'string' ? { prefix: s } : s));
  const services = specs.map((s) => uniqueName(s.prefix));
  if (services.length) await createTestNetwork(network);
  const seedRef = (await buildAndPush(registry, imageRepo, opts.seed ?? siteFiles('seed\n'))).ref;
  await Promise.all(specs.map((s, i) => createTestService({ name: services[i]!, image: seedRef, network, registry, ...(s.healthcheck ? { healthcheck: s.healthcheck } : {}) })));
  return {
    registry,
    repo,
    network,
    imageRepo,
    image: `${registry.host}/${imageRepo}`,
    seedRef,
    services,
    registryConfig: { host: registry.host, username: registry.username, password: registry.password },
    async dispose() {
      if (services.length) await removeTestResources([...services, network]).catch(() => undefined);
      await registry.stop();
      await repo.cleanup();
    },
  };
}

/** Removes a test daemon's queues and every Redis key under its prefix. */
export async function disposeQueues(config: Config): Promise<void> {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  try {
    for (const p of config.pipelines) {
      for (const name of Object.values(queueNamesOf(config, p.name))) {
        const q = new Queue(name, { connection: redis, prefix: config.redisPrefix });
        await q.obliterate({ force: true }).catch(() => undefined);
        await q.close();
      }
    }
    const keys = await redis.keys(`${config.redisPrefix}:*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

/** Commits `files`, points `branch` at it, sends the signed push; returns the run id. */
export async function pushCommit(url: string, world: World, repoName: string, files: FileMap, message: string, branch = 'main'): Promise<{ sha: string; runId: string }> {
  const sha = await world.repo.commit(files, message);
  if (branch !== 'main') await git(['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`], world.repo.workDir);
  const res = await deliver(url, pushPayload(repoName, branch, sha, message));
  if (res.status !== 202 || !res.body.runs?.[0]) throw new Error(`push not accepted: ${res.status} ${JSON.stringify(res.body)}`);
  return { sha, runId: res.body.runs[0] as string };
}

/** pushCommit, then wait for the run to finish. */
export async function deployCommit(url: string, world: World, repoName: string, files: FileMap, message: string, branch = 'main'): Promise<any> {
  const { runId } = await pushCommit(url, world, repoName, files, message, branch);
  return waitForRun(url, runId, 240_000);
}
