import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, AUTH } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { containersWith, slowBuildFiles } from '../helpers/site-stage.ts';
import { git, siteFiles, type SiteRepo } from '../support/site.ts';
import { waitForContent } from '../support/swarm.ts';

const REPO = 'acme/queue-site';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** The queue's promises on the real engine: latest push wins, cancel stops real work, stage timeouts. */
describe('run queue (real Redis, git, Docker, swarm)', () => {
  let repo: SiteRepo;
  let service: string;
  let url: string;
  let deployer: WorldDeployer | undefined;

  beforeAll(async () => {
    deployer = await startWorldDeployer({
      world: { name: 'q', services: ['q-www'] },
      // The polled branch must exist before the poller's first look.
      prepare: async (w) => {
        await w.repo.commit(siteFiles('polled base\n'), 'polled base');
        await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/polled'], w.repo.workDir);
      },
      pipelines: (w) => [
        { name: 'site', repo: REPO, url: w.repo.url, image: w.image, tag: 'live', services: [w.services[0]!], deploy: { monitor: '1s', timeout: '90s' } },
        { name: 'polled', repo: REPO, url: w.repo.url, branch: 'polled', image: w.image, tag: 'polled', services: [], poll: '1s' },
        { name: 'impatient', repo: REPO, url: w.repo.url, branch: 'impatient', image: w.image, tag: 'impatient', services: [], cancelSuperseded: true },
        { name: 'quick-timeout', repo: REPO, url: w.repo.url, branch: 'timeout', image: w.image, tag: 'timeout', services: [], timeouts: { build: '2s' } },
      ],
    });
    ({ url } = deployer);
    ({ repo } = deployer.world);
    service = deployer.world.services[0]!;
  });

  afterAll(() => deployer?.close());

  const push = async (sha: string, branch = 'main') => {
    const res = await deliver(url, pushPayload(REPO, branch, sha));
    expect(res.status).toBe(202);
    return res.body.runs[0] as string;
  };
  const getRun = async (id: string) => (await fetch(`${url}/api/runs/${id}`, AUTH)).json();
  const waitFor = async (id: string, pred: (r: any) => boolean, ms = 60_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await getRun(id);
      if (pred(r)) return r;
      if (Date.now() > deadline) throw new Error(`run ${id} never matched: ${JSON.stringify(r)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  };

  it('burst: 30 pushes while a run is active → one more run, for the last commit; the rest superseded', async () => {
    // A build that outlasts the burst by far (how fast pushes are taken in is the
    // benchmarks' business, not a wall-clock limit here); cancelled once it served.
    const slow = slowBuildFiles('burst base\n', 120);
    const first = await push(await repo.commit(slow.files, 'slow base'));
    await waitFor(first, (r) => r.stages.find((s: any) => s.name === 'build').status === 'running');
    const shas: string[] = [];
    for (let i = 0; i < 30; i++) shas.push(await repo.commit(siteFiles(`burst ${i}\n`), `burst ${i}`));
    const ids: string[] = [];
    for (const sha of shas) ids.push(await push(sha));
    // The premise: the whole burst arrived while the first run was still building.
    expect((await getRun(first)).stages.find((s: any) => s.name === 'build').status).toBe('running');
    expect((await fetch(`${url}/api/runs/${first}/cancel`, { method: 'POST', headers: admin })).status).toBe(202);
    expect((await waitForRun(url, first)).status).toBe('cancelled');

    const last = await waitForRun(url, ids[29]!);
    expect(last.status).toBe('succeeded');
    expect(last.commit).toBe(shas[29]);
    const runs = await Promise.all(ids.slice(0, 29).map(getRun));
    expect(runs.map((r) => r.status)).toEqual(Array(29).fill('superseded'));
    expect(runs.every((r) => r.supersededBy !== null && r.startedAt === null)).toBe(true);
    // Each was superseded by a later push; following the links ends at the last run.
    let cursor = runs[0];
    for (let hops = 0; cursor.supersededBy && hops < 40; hops++) cursor = cursor.supersededBy === ids[29] ? last : await getRun(cursor.supersededBy);
    expect(cursor.id).toBe(ids[29]);
    await waitForContent(service, 'burst 29\n', 30_000);
    const page = await (await fetch(`${url}/api/pipelines/site/runs?limit=100`, AUTH)).json();
    for (const id of [first, ...ids]) expect(page.runs.some((r: any) => r.id === id)).toBe(true);
  });

  it('cancel during a slow build: cancelled within 5 s, the build container is gone, the next run proceeds', async () => {
    const slow = slowBuildFiles('never\n', 60);
    const id = await push(await repo.commit(slow.files, 'very slow'));
    await waitFor(id, (r) => r.stages.find((s: any) => s.name === 'build').status === 'running');
    const deadline = Date.now() + 30_000;
    while ((await containersWith(slow.marker)).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await containersWith(slow.marker)).not.toEqual([]);
    const nextSha = await repo.commit(siteFiles('after cancel\n'), 'after cancel');

    const t0 = Date.now();
    const res = await fetch(`${url}/api/runs/${id}/cancel`, { method: 'POST', headers: admin });
    expect(res.status).toBe(202);
    const cancelled = await waitForRun(url, id, 10_000);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.stages.find((s: any) => s.name === 'build').status).toBe('cancelled');
    expect(await runLog(url, id)).toContain('stopped: cancelled by admin');

    const gone = Date.now() + 10_000;
    while ((await containersWith(slow.marker)).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 250));
    expect(await containersWith(slow.marker)).toEqual([]);

    const next = await waitForRun(url, await push(nextSha));
    expect(next.status).toBe('succeeded');
    expect((await fetch(`${url}/api/runs/${id}/cancel`, { method: 'POST', headers: admin })).status).toBe(409);
    expect((await fetch(`${url}/api/runs/${id}/cancel`, { method: 'POST' })).status).toBe(401);
  });

  it('cancelling a waiting run ends it at once; cancelling during deploy is refused with 409', async () => {
    const slow = slowBuildFiles('slow for cancel\n', 3);
    const active = await push(await repo.commit(slow.files, 'slow'));
    await waitFor(active, (r) => r.status === 'running');
    const waiting = await push(await repo.commit(siteFiles('waiting\n'), 'waiting'));
    const res = await fetch(`${url}/api/runs/${waiting}/cancel`, { method: 'POST', headers: admin });
    expect(res.status).toBe(202);
    expect((await res.json()).status).toBe('cancelled');
    expect((await getRun(waiting)).status).toBe('cancelled');

    await waitFor(active, (r) => r.stages.find((s: any) => s.name === 'deploy').status === 'running', 60_000);
    const refused = await fetch(`${url}/api/runs/${active}/cancel`, { method: 'POST', headers: admin });
    expect(refused.status).toBe(409);
    expect((await refused.json()).error).toMatch(/deploying/);
    expect((await waitForRun(url, active)).status).toBe('succeeded');
  });

  it('fails a stage that exceeds its hard timeout with "timed out"', async () => {
    const { files } = slowBuildFiles('too slow\n', 30);
    const sha = await repo.commit(files, 'too slow');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/timeout'], repo.workDir);
    const run = await waitForRun(url, await push(sha, 'timeout'), 60_000);
    expect(run.status).toBe('failed');
    expect(run.error).toBe('build: build timed out after 2 s');
  });

  it('deploys a commit whose webhook never came (poll), and "Check now" queues or reports up to date', async () => {
    const sha = await repo.commit(siteFiles('missed webhook\n'), 'missed webhook');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/polled'], repo.workDir);
    const deadline = Date.now() + 30_000;
    let polled: any;
    while (!polled && Date.now() < deadline) {
      const page = await (await fetch(`${url}/api/pipelines/polled/runs`, AUTH)).json();
      polled = page.runs.find((r: any) => r.commit === sha);
      if (!polled) await new Promise((r) => setTimeout(r, 250));
    }
    expect(polled?.trigger).toBe('poll');
    expect((await waitForRun(url, polled.id)).status).toBe('succeeded');

    const refresh = (name: string) => fetch(`${url}/api/pipelines/${name}/refresh`, { method: 'POST', headers: admin });
    const same = await refresh('polled');
    expect(same.status).toBe(200);
    expect(await same.json()).toMatchObject({ upToDate: true, commit: sha });
    // The site pipeline does not poll: a commit pushed without webhook waits for "Check now".
    const unseen = await repo.commit(siteFiles('checked now\n'), 'checked now');
    const queued = await refresh('site');
    expect(queued.status).toBe(202);
    const body = await queued.json();
    expect(body.commit).toBe(unseen);
    expect((await waitForRun(url, body.run)).status).toBe('succeeded');
    expect((await fetch(`${url}/api/pipelines/site/refresh`, { method: 'POST' })).status).toBe(401);
  });

  it('cancelSuperseded: a newer push stops a run still building; it ends superseded with a link', async () => {
    const slow = slowBuildFiles('old\n', 60);
    const oldSha = await repo.commit(slow.files, 'old slow');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/impatient'], repo.workDir);
    const old = await push(oldSha, 'impatient');
    await waitFor(old, (r) => r.stages.find((s: any) => s.name === 'build').status === 'running');
    const newSha = await repo.commit(siteFiles('new\n'), 'new');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/impatient'], repo.workDir);
    const t0 = Date.now();
    const fresh = await push(newSha, 'impatient');
    const stopped = await waitForRun(url, old, 20_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(stopped).toMatchObject({ status: 'superseded', supersededBy: fresh });
    expect((await waitForRun(url, fresh)).status).toBe('succeeded');
    const gone = Date.now() + 10_000;
    while ((await containersWith(slow.marker)).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 250));
    expect(await containersWith(slow.marker)).toEqual([]);
  });
});
