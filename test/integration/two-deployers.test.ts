import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { testConfig, testEnv, AUTH } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { disposeQueues } from '../helpers/world.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, siteFiles, type SiteRepo } from '../support/site.ts';
import { uniqueName } from '../support/swarm.ts';

const REPO = 'acme/shared-name';

interface Instance {
  name: string;
  repo: SiteRepo;
  image: string;
  config: Config;
  proc: DeployerProcess;
  url: string;
}

/**
 * Two deployers, configured differently, with the same Redis prefix and a pipeline of
 * the same name, on one Redis (real processes). Before, their workers took each other's
 * jobs and ran them with their own config ("not our ref" fetching from the other's
 * repository). Each run must be executed by a worker of its own deployer, with its own
 * config, and both must say in their log that another deployer shares the prefix.
 */
describe('two deployers sharing a Redis prefix and a pipeline name', () => {
  let registry: TestRegistry;
  const prefix = `test-${randomBytes(6).toString('hex')}`;
  const instances: Instance[] = [];

  beforeAll(async () => {
    registry = await startRegistry({ auth: true });
    for (const name of ['deployer-east', 'deployer-west']) {
      const repo = await createSiteRepo();
      const image = `${registry.host}/${uniqueName(name)}`;
      const port = await freePort();
      const config = testConfig({
        listen: `127.0.0.1:${port}`,
        logLevel: 'info',
        redisPrefix: prefix,
        instance: name,
        registry: { host: registry.host, username: registry.username, password: registry.password },
        pipelines: [{ name: 'site', repo: REPO, url: repo.url, image, tag: 'live', services: [] }],
      });
      const proc = await spawnDeployer(['serve', '--config', config.file], testEnv(registry.password), 'listening');
      instances.push({ name, repo, image, config, proc, url: `http://127.0.0.1:${port}` });
    }
  });

  afterAll(async () => {
    for (const i of instances) await i.proc.kill('SIGTERM');
    for (const i of instances) await disposeQueues(i.config);
    for (const i of instances) await i.repo.cleanup();
    await registry?.stop();
  });

  it('pushes to both in turn: every run is executed by its own deployer, with its own config, and succeeds', async () => {
    for (let round = 0; round < 2; round++) {
      for (const i of instances) {
        // Each repository has commits the other has never seen: run with the other's
        // config, the fetch fails ("not our ref"), and the image would be the other's.
        const sha = await i.repo.commit(siteFiles(`${i.name} round ${round}\n`), `${i.name} ${round}`);
        const res = await deliver(i.url, pushPayload(REPO, 'main', sha));
        expect(res.status).toBe(202);
        const run = await waitForRun(i.url, res.body.runs[0] as string, 120_000);
        if (run.status !== 'succeeded') console.log(await runLog(i.url, run.id));
        expect(run).toMatchObject({ status: 'succeeded', commit: sha, worker: `${hostname()}-${i.proc.proc.pid}` });
        expect(run.image.ref.startsWith(`${i.image}:live@sha256:`)).toBe(true);
      }
    }
    for (const i of instances) {
      const runs = (await (await fetch(`${i.url}/api/pipelines/site/runs`, AUTH)).json()).runs as { worker: string; status: string }[];
      expect(runs.map((r) => [r.status, r.worker])).toEqual(Array(2).fill(['succeeded', `${hostname()}-${i.proc.proc.pid}`]));
    }
  });

  it('each deployer says in its log that another one with a different config shares the prefix and pipeline name', async () => {
    for (const i of instances) {
      const other = instances.find((x) => x !== i)!;
      await waitUntil(`${i.name} logs the conflict`, () => /another deployer with a different config shares this Redis prefix and pipeline name/.test(i.proc.output()), 20_000);
      const line = i.proc.output().split('\n').find((l) => l.includes('another deployer with a different config'))!;
      expect(JSON.parse(line)).toMatchObject({ level: 40, pipeline: 'site', redisPrefix: prefix, other: { instance: other.name }, mine: { instance: i.name } });
    }
  });
});
