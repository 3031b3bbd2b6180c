import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { testConfig, testEnv, AUTH } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { waitForRun } from '../helpers/runs.ts';
import { slowBuildFiles } from '../helpers/site-stage.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, git, type SiteRepo } from '../support/site.ts';
import { uniqueName } from '../support/swarm.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'acme/scale';

/** `serve --no-worker` plus two `worker` processes sharing the queue through Redis. */
describe('scale-out: two worker processes and an HTTP-only server', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;
  let config: Config;
  const procs: DeployerProcess[] = [];
  let url: string;

  beforeAll(async () => {
    registry = await startRegistry({ auth: true });
    repo = await createSiteRepo();
    const image = `${registry.host}/${uniqueName('scale')}`;
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      concurrency: 1,
      registry: { host: registry.host, username: registry.username, password: registry.password },
      pipelines: [
        { name: 'alpha', repo: REPO, url: repo.url, branch: 'alpha', image, tag: 'alpha', services: [] },
        { name: 'beta', repo: REPO, url: repo.url, branch: 'beta', image, tag: 'beta', services: [] },
      ],
    });
    const env = testEnv(registry.password);
    procs.push(await spawnDeployer(['serve', '--no-worker', '--config', config.file], env, 'listening'));
    procs.push(await spawnDeployer(['worker', '--config', config.file], env, 'worker started'));
    procs.push(await spawnDeployer(['worker', '--config', config.file], env, 'worker started'));
  });

  afterAll(async () => {
    for (const p of procs) await p.kill('SIGTERM');
    await disposeQueues(config);
    await registry?.stop();
    await repo?.cleanup();
  });

  it('runs two pipelines in parallel on different workers, with logs live through the API', async () => {
    const push = async (branch: string) => {
      const sha = await repo.commit(slowBuildFiles(`${branch}\n`, 4).files, branch);
      await git(['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`], repo.workDir);
      const res = await deliver(url, pushPayload(REPO, branch, sha));
      expect(res.status).toBe(202);
      return res.body.runs[0] as string;
    };
    const a = await push('alpha');
    const b = await push('beta');

    // Live: the slow step's output is readable while the run is still running.
    const deadline = Date.now() + 60_000;
    let live = false;
    while (!live && Date.now() < deadline) {
      const run = await (await fetch(`${url}/api/runs/${a}`, AUTH)).json();
      const log = await (await fetch(`${url}/api/runs/${a}/log`, AUTH)).text();
      if (run.status === 'running' && log.includes('slow step')) live = true;
      else if (run.status !== 'queued' && run.status !== 'running') break;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(live).toBe(true);

    const [ra, rb] = [await waitForRun(url, a), await waitForRun(url, b)];
    expect([ra.status, rb.status]).toEqual(['succeeded', 'succeeded']);
    expect(ra.worker).not.toBeNull();
    expect(ra.worker).not.toBe(rb.worker);
    // Overlapping in time: executed in parallel, not one after the other.
    expect(Date.parse(ra.startedAt)).toBeLessThan(Date.parse(rb.finishedAt));
    expect(Date.parse(rb.startedAt)).toBeLessThan(Date.parse(ra.finishedAt));
  });
});
