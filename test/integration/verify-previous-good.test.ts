import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { siteFiles } from '../support/site.ts';
import { serviceImage, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/previous-good';

/**
 * Issue #15, item 5: `onFailure: previous-good-push`. B (good) and C (bad: its container
 * fails the health check) are pushed together; C supersedes B and fails (swarm rolls it
 * back); the deployer then deploys B, the newest superseded push newer than what
 * serves, as its own run linked to C.
 */
describe('onFailure: previous-good-push on the real swarm', () => {
  let world: World;
  let config: Config;
  let daemon: Daemon;
  let www: string;

  beforeAll(async () => {
    world = await createWorld({ name: 'pg', services: [{ prefix: 'pg-www', healthcheck: true }] });
    www = world.services[0]!;
    config = testConfig({
      registry: world.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [www], deploy: { monitor: '1s', timeout: '60s' }, cancelSuperseded: true, onFailure: 'previous-good-push' }],
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
  });

  afterAll(async () => {
    await daemon?.close();
    if (config) await disposeQueues(config);
    await world?.dispose();
  });

  it('C fails, then B is deployed as a run that follows C', async () => {
    const url = daemon.url!;
    const b = await world.repo.commit(siteFiles('B\n'), 'B: good');
    // Serves nothing on 8080 (httpd listens on 8081): the health check fails. C's push
    // supersedes B (cancelSuperseded stops B if it already started building).
    const c = await world.repo.commit({ ...siteFiles('C\n'), Dockerfile: siteFiles('').Dockerfile!.replace('"-p","8080"', '"-p","8081"') }, 'C: bad');
    const runB = (await deliver(url, pushPayload(REPO, 'main', b))).body.runs[0] as string;
    // C lands while B builds. (Two pushes in the same instant can both run: a run a worker
    // has taken but not yet reported started is neither waiting nor active to the store.)
    await waitUntil('B is running', async () => (await (await fetch(`${url}/api/runs/${runB}`, AUTH)).json()).status === 'running', 60_000, 50);
    const runC = (await deliver(url, pushPayload(REPO, 'main', c))).body.runs[0] as string;

    const failed = await waitForRun(url, runC, 180_000);
    expect(failed.status).toBe('rolled_back'); // swarm put the previous version back
    expect(failed.commit).toBe(c);
    expect(failed.error).toMatch(new RegExp(`^deploy: ${www} rolled back`)); // its image was built and failed in swarm
    expect((await waitForRun(url, runB, 30_000)).status).toBe('superseded');

    let followUp: any;
    await waitUntil('a run follows C', async () => {
      followUp = (await (await fetch(`${url}/api/pipelines/site/runs`, AUTH)).json()).runs.find((r: any) => r.follows === runC);
      return followUp !== undefined;
    }, 30_000, 200);
    const done = await waitForRun(url, followUp.id, 180_000);
    expect(done).toMatchObject({ status: 'succeeded', commit: b, follows: runC });
    expect(await serviceImage(www)).toBe(done.image.ref);
    await waitForContent(www, 'B\n', 30_000);
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'site');
    expect(p.deployed.commit).toBe(b);
    // Linked both ways on the page people look at.
    expect(await (await fetch(`${url}/runs/${done.id}`, AUTH)).text()).toContain(`href="/runs/${runC}"`);
    expect((await waitForRun(url, runC)).followedBy).toBe(done.id);
    expect(await (await fetch(`${url}/runs/${runC}`, AUTH)).text()).toContain(`href="/runs/${done.id}"`);
    // Exactly one follow-up: B succeeded, nothing else is tried.
    const all = (await (await fetch(`${url}/api/pipelines/site/runs`, AUTH)).json()).runs;
    expect(all.filter((r: any) => r.follows !== null)).toHaveLength(1);
  });
});
