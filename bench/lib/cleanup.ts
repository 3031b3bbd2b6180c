// Removing what a scenario left in Redis and in the Docker engine's image store.
import { rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import Docker from 'dockerode';
import { Redis } from 'ioredis';

/**
 * Deletes every key under `prefix:` (a per-run prefix): the pipelines' queues (named
 * `pipeline-<name>-<fingerprint>…`), the event streams and everything else.
 */
export async function clearRedis(redisUrl: string, prefix: string, _pipelines: string[] = []): Promise<void> {
  if (!prefix.startsWith('test-')) throw new Error(`refusing to clear Redis prefix "${prefix}": not a per-run prefix`);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  try {
    let cursor = '0';
    for (let i = 0; i < 10_000; i++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    redis.disconnect();
  }
}

/** Removes every local image of `repository` (all tags), e.g. what the deployer built. */
export async function removeImages(repository: string): Promise<number> {
  const docker = new Docker();
  const images = await docker.listImages({ filters: { reference: [repository, `${repository}:*`] } });
  let removed = 0;
  for (const img of images) {
    for (const tag of img.RepoTags ?? []) {
      if (tag.startsWith(`${repository}:`)) await docker.getImage(tag).remove().catch(() => undefined);
    }
    try {
      await docker.getImage(img.Id).remove({ force: true });
      removed++;
    } catch {
      /* still used by a container or another tag: left alone */
    }
  }
  return removed;
}

/** Runs every cleanup step even when some fail; returns the errors' messages. */
export async function cleanupAll(steps: (() => Promise<unknown>)[]): Promise<string[]> {
  const errors: string[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    }
  }
  return errors;
}

/** Deletes the temp folder testConfig() made around `dataDir` (and only such a folder). */
export async function removeDataDir(dataDir: string | undefined): Promise<void> {
  if (!dataDir) return;
  const root = dirname(dataDir);
  if (basename(dataDir) === 'data' && basename(root).startsWith('deployer-test-')) await rm(root, { recursive: true, force: true });
}
