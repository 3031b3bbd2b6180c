import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
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
});
