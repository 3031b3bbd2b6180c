import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, AUTH_HEADER } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { siteFiles } from '../support/site.ts';
import { serviceImage, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/replay';

/**
 * Issue #11, item 2: an older push — the same signed body resent with a new delivery id
 * (a replay, or GitHub redelivering), or a delivery that arrives after a newer one — never
 * changes what serves. History: A ← M ← B. A deploys, then B; then A's body is resent
 * and M's push arrives late: both runs end superseded, saying why, nothing of them is
 * built or pushed, and the service still serves B.
 */
describe('a replayed or late older push never changes what serves (real git, Docker, swarm)', () => {
  let d: WorldDeployer | undefined;
  let service: string;

  beforeAll(async () => {
    d = await startWorldDeployer({
      world: { name: 'replay', services: ['replay-www'] },
      pipelines: (w) => [{ name: 'site', repo: REPO, url: w.repo.url, image: w.image, tag: 'live', services: [w.services[0]!], deploy: { monitor: '500ms', timeout: '60s' } }],
    });
    service = d.world.services[0]!;
  });
  afterAll(() => d?.close());

  /** Registry tags of the pipeline's image (basic auth, as the deployer pushes). */
  const tags = async (): Promise<string[]> => {
    const { registry, imageRepo } = d!.world;
    const res = await fetch(`http://${registry.host}/v2/${imageRepo}/tags/list`, { headers: { authorization: `Basic ${Buffer.from(`${registry.username}:${registry.password}`).toString('base64')}` } });
    return ((await res.json()) as { tags: string[] | null }).tags ?? [];
  };

  it('deploys A then B; A resent and M delivered late both end superseded with the reason; B still serves', async () => {
    const { url, world } = d!;
    const shaA = await world.repo.commit(siteFiles('A\n'), 'A');
    const bodyA = JSON.stringify(pushPayload(REPO, 'main', shaA, 'A'));
    const first = await deliver(url, undefined, { raw: bodyA });
    expect(first.status).toBe(202);
    expect((await waitForRun(url, first.body.runs[0])).status).toBe('succeeded');

    // M is pushed but its delivery is held back; B follows and deploys.
    const shaM = await world.repo.commit(siteFiles('M\n'), 'M');
    const shaB = await world.repo.commit(siteFiles('B\n'), 'B');
    const pushB = await deliver(url, pushPayload(REPO, 'main', shaB, 'B'));
    const runB = await waitForRun(url, pushB.body.runs[0]);
    expect(runB.status).toBe('succeeded');
    await waitForContent(service, 'B\n', 30_000);
    const imageB = await serviceImage(service);
    expect(imageB).toContain(runB.image.digest);

    // The very same signed body as A's first delivery, under a new delivery id; then M's
    // delivery, arriving only now. One after the other: each is judged on its own (two
    // pushes waiting together are coalesced first: the later one supersedes the earlier).
    const reasonFor = (sha: string) => `${sha.slice(0, 7)} is not a descendant of ${shaB.slice(0, 7)}, which serves and is not the branch head (${shaB.slice(0, 7)}): an older push delivered late or replayed`;
    for (const [deliverIt, sha] of [[() => deliver(url, undefined, { raw: bodyA }), shaA], [() => deliver(url, pushPayload(REPO, 'main', shaM, 'M')), shaM]] as const) {
      const res = await deliverIt();
      expect(res.status).toBe(202);
      const id = res.body.runs[0] as string;
      expect(id).not.toBe(first.body.runs[0]);
      const run = await waitForRun(url, id);
      expect(run).toMatchObject({ status: 'superseded', error: reasonFor(sha), supersededBy: runB.id, commit: sha, image: null });
      expect(Object.fromEntries(run.stages.map((s: { name: string; status: string }) => [s.name, s.status]))).toEqual({ fetch: 'succeeded', build: 'skipped', push: 'skipped', deploy: 'skipped' });
      expect(await runLog(url, id)).toContain(reasonFor(sha));
    }

    // What serves is unchanged, and nothing of A (again) or M reached the registry.
    expect(await serviceImage(service)).toBe(imageB);
    await waitForContent(service, 'B\n', 10_000);
    const pushed = await tags();
    expect(pushed).toContain(shaB);
    expect(pushed).not.toContain(shaM);
    const list = (await (await fetch(`${url}/api/pipelines/site/deployments`, AUTH)).json()) as { commit: string; replacedAt: string | null }[];
    expect(list.filter((x) => x.replacedAt === null).map((x) => x.commit)).toEqual([shaB]);
  });

  it('a replay of an older push that supersedes the waiting newer one deploys, then the branch head follows (catch-up)', async () => {
    const { url, world } = d!;
    const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { ...AUTH_HEADER, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    // C then D on top of what serves; D's push waits behind a pause, and C's push,
    // delivered (again) only now, supersedes it by arrival order at intake.
    const shaC = await world.repo.commit(siteFiles('C\n'), 'C');
    const shaD = await world.repo.commit(siteFiles('D\n'), 'D');
    expect((await post('/api/pipelines/site/pause', { reason: 'hold D' })).status).toBe(200);
    const pushD = await deliver(url, pushPayload(REPO, 'main', shaD, 'D'));
    const pushC = await deliver(url, pushPayload(REPO, 'main', shaC, 'C'));
    expect([pushD.status, pushC.status]).toEqual([202, 202]);
    const [runD, runC] = [pushD.body.runs[0] as string, pushC.body.runs[0] as string];
    expect(await (await fetch(`${url}/api/runs/${runD}`, AUTH)).json()).toMatchObject({ status: 'superseded', supersededBy: runC });
    expect((await post('/api/pipelines/site/resume', {})).status).toBe(200);

    // C descends from what serves: it deploys, and says the branch is ahead of it.
    const c = await waitForRun(url, runC);
    expect(c).toMatchObject({ status: 'succeeded', commit: shaC });
    expect(await runLog(url, runC)).toContain(`main points at ${shaD.slice(0, 12)}, not at what this run deployed: it is deployed next`);
    // The store queues the head right after, as a poll run, and it deploys.
    let caughtUp: { id: string } | undefined;
    await waitUntil('a run for D after C', async () => {
      const runs = ((await (await fetch(`${url}/api/pipelines/site/runs?limit=10`, AUTH)).json()) as { runs: { id: string; commit: string; trigger: string }[] }).runs;
      caughtUp = runs.find((r) => r.commit === shaD && r.id !== runD && r.trigger === 'poll');
      return caughtUp !== undefined;
    }, 30_000);
    expect(await waitForRun(url, caughtUp!.id)).toMatchObject({ status: 'succeeded', commit: shaD, trigger: 'poll' });
    await waitForContent(service, 'D\n', 30_000);
  });
});
