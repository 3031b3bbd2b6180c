import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueNamesOf } from '../../src/queue/run-queue.ts';
import { ADMIN_TOKEN, AUTH } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { waitForRun } from '../helpers/runs.ts';
import { siteFiles, type SiteRepo } from '../support/site.ts';
import { serviceImage, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/rollback';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

/** Manual rollback to an exact recorded digest, pausing so the next push cannot undo it. */
describe('manual rollback, pause and resume (real swarm)', () => {
  let repo: SiteRepo;
  let service: string;
  let url: string;
  const deployed: Record<string, any> = {};
  let deployer: WorldDeployer | undefined;

  beforeAll(async () => {
    deployer = await startWorldDeployer({
      world: { name: 'rb', services: ['rb-www'] },
      pipelines: (w) => [{ name: 'site', repo: REPO, url: w.repo.url, image: w.image, tag: 'live', services: [w.services[0]!], deploy: { monitor: '1s', timeout: '60s' } }],
    });
    ({ url } = deployer);
    ({ repo } = deployer.world);
    service = deployer.world.services[0]!;
  });

  afterAll(() => deployer?.close());

  const push = async (label: string) => {
    const sha = await repo.commit(siteFiles(`${label}\n`), label);
    const res = await deliver(url, pushPayload(REPO, 'main', sha));
    expect(res.status).toBe(202);
    return res.body.runs[0] as string;
  };
  const pipeline = async () => (await (await fetch(`${url}/api/pipelines/site`, AUTH)).json());
  /** Whether the run has a job in the queue: a held run has none, so no worker can start it. */
  const hasJob = async (runId: string) => {
    const redis = new Redis(deployer!.config.redisUrl, { maxRetriesPerRequest: null });
    const q = new Queue(queueNamesOf(deployer!.config, 'site').run, { connection: redis, prefix: deployer!.config.redisPrefix });
    try {
      return (await q.getJob(runId)) !== undefined;
    } finally {
      await q.close();
      redis.disconnect();
    }
  };

  it('rolls back two versions to an exact digest, as its own run, and pauses the pipeline', async () => {
    for (const v of ['A', 'B', 'C']) {
      const run = await waitForRun(url, await push(v));
      expect(run.status).toBe('succeeded');
      deployed[v] = run;
    }
    const history = await (await fetch(`${url}/api/pipelines/site/deployments`, AUTH)).json();
    expect(history.map((d: any) => d.commit).slice(0, 3)).toEqual([deployed.C.commit, deployed.B.commit, deployed.A.commit]);
    const target = history.find((d: any) => d.commit === deployed.A.commit);
    expect(target).toMatchObject({ service, image: deployed.A.image.ref, runId: deployed.A.id });

    expect((await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(401);
    const res = await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', headers: admin, body: JSON.stringify({ deployment: target.id }) });
    expect(res.status).toBe(202);
    const run = await waitForRun(url, (await res.json()).run);
    expect(run).toMatchObject({ status: 'succeeded', trigger: 'rollback', commit: deployed.A.commit });
    expect(run.image.ref).toBe(deployed.A.image.ref); // the same digest, not a rebuild
    expect(run.stages.map((s: any) => s.status)).toEqual(['skipped', 'skipped', 'skipped', 'succeeded']);
    expect(await serviceImage(service)).toBe(deployed.A.image.ref);
    await waitForContent(service, 'A\n', 30_000);
    const p = await pipeline();
    expect(p.paused).toBe(true);
    expect(p.pause.reason).toMatch(/rolled back to/);
    expect(p.deployed.commit).toBe(deployed.A.commit);
    const runs = (await (await fetch(`${url}/api/pipelines/site/runs`, AUTH)).json()).runs;
    expect(runs[0].id).toBe(run.id);
  });

  it('holds pushes while paused (visible, waiting); resume deploys the newest', async () => {
    const d = await push('D');
    const e = await push('E');
    // Held, not merely not started yet: the answer came after the hold was decided, and
    // a held run has no job, so no worker can take it.
    expect((await (await fetch(`${url}/api/runs/${e}`, AUTH)).json()).status).toBe('queued');
    expect(await hasJob(e)).toBe(false);
    expect((await (await fetch(`${url}/api/runs/${d}`, AUTH)).json())).toMatchObject({ status: 'superseded', supersededBy: e });
    expect(await serviceImage(service)).toBe(deployed.A.image.ref);

    const resumed = await fetch(`${url}/api/pipelines/site/resume`, { method: 'POST', headers: { authorization: admin.authorization } });
    expect(resumed.status).toBe(200);
    const body = await resumed.json();
    expect(body).toMatchObject({ paused: false, resumedRun: e });
    expect((await waitForRun(url, e)).status).toBe('succeeded');
    await waitForContent(service, 'E\n', 30_000);
  });

  it('rollback with no body goes to the previous deployment; pause and resume work on their own', async () => {
    const res = await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', headers: { authorization: admin.authorization } });
    expect(res.status).toBe(202);
    const run = await waitForRun(url, (await res.json()).run);
    expect(run.status).toBe('succeeded');
    expect(run.image.ref).toBe(deployed.A.image.ref); // the deployment before E
    expect((await pipeline()).paused).toBe(true);
    await fetch(`${url}/api/pipelines/site/resume`, { method: 'POST', headers: { authorization: admin.authorization } });
    const paused = await fetch(`${url}/api/pipelines/site/pause`, { method: 'POST', headers: admin, body: JSON.stringify({ reason: 'freeze for the release' }) });
    expect(paused.status).toBe(200);
    expect((await paused.json()).pause).toMatchObject({ reason: 'freeze for the release', by: 'admin' });
    // While paused, one held push can be deployed by hand; the pipeline stays paused.
    const held = await push('F');
    expect((await (await fetch(`${url}/api/runs/${held}`, AUTH)).json()).status).toBe('queued');
    expect(await hasJob(held)).toBe(false);
    expect((await fetch(`${url}/api/runs/${held}/start`, { method: 'POST' })).status).toBe(401);
    const started = await fetch(`${url}/api/runs/${held}/start`, { method: 'POST', headers: { authorization: admin.authorization } });
    expect(started.status).toBe(202);
    expect((await waitForRun(url, held)).status).toBe('succeeded');
    await waitForContent(service, 'F\n', 30_000);
    expect((await pipeline()).paused).toBe(true);
    expect((await fetch(`${url}/api/runs/${held}/start`, { method: 'POST', headers: { authorization: admin.authorization } })).status).toBe(409);
    expect((await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', headers: admin, body: JSON.stringify({ deployment: 'dnonexistent0000' }) })).status).toBe(409);
    expect((await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', headers: admin, body: JSON.stringify({ deployment: 42 }) })).status).toBe(400);
  });
});
