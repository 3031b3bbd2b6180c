import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { manifestRefOf } from '../../src/pipeline/rollback-targets.ts';
import { AUTH, AUTH_HEADER, testConfig } from '../helpers/config.ts';
import { runLog } from '../helpers/runs.ts';
import { waitUntil } from '../helpers/wait.ts';
import { createWorld, deployCommit, disposeQueues, type World } from '../helpers/world.ts';
import { buildAndPushCaddy, createCaddyService, type CaddyService } from '../support/caddy.ts';
import type { TestRegistry } from '../support/registry.ts';
import type { FileMap } from '../support/site.ts';
import { removeTestResources, serviceImage, uniqueName } from '../support/swarm.ts';

const REPO = 'acme/verified';

/**
 * A site that bakes its revision in from the `SOURCE_COMMIT` build argument: `revision
 * <sha>` in an `X-Revision` header and body at /cgi-bin/rev. A commit that carries its
 * own `www/rev` reports that instead (an app reporting a wrong revision).
 */
function revisionSite(reports?: string): FileMap {
  return {
    Dockerfile: [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox","--install","-s","/bin"]',
      'COPY www /www',
      'ARG SOURCE_COMMIT',
      'RUN ["/bin/sh","-c","[ -s /www/rev ] || echo \\"$SOURCE_COMMIT\\" > /www/rev; chmod 755 /www/cgi-bin/rev"]',
      'CMD ["httpd","-f","-p","8080","-h","/www"]',
      '',
    ].join('\n'),
    'www/index.html': 'the site\n',
    'www/cgi-bin/rev': `#!/bin/sh\nr=$(cat /www/rev)\nprintf 'Content-Type: text/plain\\r\\nX-Revision: %s\\r\\n\\r\\nrevision %s\\n' "$r" "$r"\n`,
    'www/rev': reports ?? null,
  };
}

/** Deletes a manifest as an operator's registry garbage collection would (delete is enabled in the test registry). */
async function deleteManifest(r: TestRegistry, ref: string): Promise<void> {
  const m = manifestRefOf(ref)!;
  const res = await fetch(`http://${r.host}/v2/${m.repository}/manifests/${m.digest}`, {
    method: 'DELETE',
    headers: { authorization: `Basic ${Buffer.from(`${r.username}:${r.password}`).toString('base64')}` },
  });
  if (res.status !== 202) throw new Error(`DELETE manifest: ${res.status} ${await res.text()}`);
}

/**
 * Issue #15 wired into runs, on the real topology: Caddy (host-mode published) in front
 * of a swarm service with a health check; the daemon builds, pushes and deploys commits
 * whose revision comes from SOURCE_COMMIT. Edge verification and the probe run inside the
 * deploy stage and land on the run's JSON; a healthy image that serves the old revision
 * through the proxy is rolled back (run rolled_back) and the previous revision is
 * verified at the edge again; a rollback to a deployment whose manifest is gone answers
 * 409 and changes nothing.
 */
describe('verified deploys in the pipeline, through Caddy', () => {
  let world: World;
  let caddy: CaddyService;
  let caddyName: string;
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let www: string;
  const commits: Record<string, string> = {};

  beforeAll(async () => {
    world = await createWorld({ name: 'vp', seed: revisionSite('seed'), services: [{ prefix: 'vp-www', healthcheck: true }] });
    www = world.services[0]!;
    caddyName = uniqueName('vp-caddy');
    const caddyImage = await buildAndPushCaddy(world.registry, uniqueName('vp-caddy-img'));
    caddy = await createCaddyService({ name: caddyName, image: caddyImage.ref, network: world.network, registry: world.registry, upstream: `${www}:8080` });
    config = configWith('start-first');
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    url = daemon.url!;
  });

  /** The same pipeline (same owner labels), with the rollout order given. */
  const configWith = (order: string) =>
    testConfig({
      registry: world.registryConfig,
      instance: 'verify-pipeline-test',
      extraYaml: 'rollbackCheckInterval: 1s\n',
      pipelines: [{
        name: 'site', repo: REPO, url: world.repo.url, image: world.image, services: [www],
        deploy: {
          order, monitor: '500ms', timeout: '60s',
          verify: { url: `${caddy.url}cgi-bin/rev`, expect: { header: 'X-Revision' }, timeout: '6s', interval: '250ms' },
          probe: { url: caddy.url, rate: '20/s', maxFailed: 0 },
        },
      }],
    });
  const others: Config[] = [];

  afterAll(async () => {
    await daemon?.close();
    for (const c of [config, ...others].filter(Boolean)) await disposeQueues(c);
    await removeTestResources([caddyName].filter(Boolean)).catch(() => undefined);
    await world?.dispose();
  });

  const push = async (name: string, files: FileMap) => {
    const run = await deployCommit(url, world, REPO, files, name);
    commits[name] = run.commit;
    return run;
  };
  const edgeRevision = async () => (await fetch(`${caddy.url}cgi-bin/rev`)).headers.get('x-revision');

  it('a good commit is verified at the edge, with the probe figures on the run', async () => {
    const run = await push('good', revisionSite());
    expect(run.status, run.error).toBe('succeeded');
    expect(run.verify).toMatchObject({ ok: true, commit: run.commit, detail: expect.stringMatching(new RegExp(`^served by the proxy: revision ${run.commit.slice(0, 12)} \\(3 answers in a row`)) });
    expect(run.probe).toMatchObject({ url: caddy.url, failed: 0 });
    expect(run.probe.sent).toBeGreaterThan(20); // 20/s over the rollout and its 3 s tail
    for (const k of ['p50Ms', 'p99Ms', 'longestGapMs']) expect(typeof run.probe[k]).toBe('number');
    expect(run.probe.p99Ms).toBeGreaterThanOrEqual(run.probe.p50Ms);
    expect(await edgeRevision()).toBe(run.commit);
    const page = await (await fetch(`${url}/runs/${run.id}`, AUTH)).text();
    expect(page).toMatch(/Verified at the edge/);
    expect(page).toMatch(/requests sent/);
    // …and in the metrics.
    const metrics = await (await fetch(`${url}/metrics`, AUTH)).text();
    expect(metrics).toContain(`deployer_probe_requests_total{pipeline="site"} ${run.probe.sent}`);
    expect(metrics).toContain(`deployer_probe_failed_requests_total{pipeline="site"} 0`);
    expect(metrics).toContain(`deployer_edge_verifications_total{pipeline="site",result="ok"} 1`);
  });

  it('a healthy image that serves the old revision through the proxy is rolled back, and the old revision is verified again', async () => {
    const good = commits.good!;
    const goodImage = await serviceImage(www);
    const run = await push('liar', revisionSite(good));
    expect(run.status, run.error).toBe('rolled_back');
    expect(run.error).toMatch(new RegExp(`deploy: rolled back: not verified at the edge: served by the proxy: old revision ${good.slice(0, 12)} \\(X-Revision\\)`));
    expect(run.error).toMatch(new RegExp(`the edge serves ${good.slice(0, 12)} again`));
    expect(run.verify).toMatchObject({ ok: false, commit: run.commit });
    expect(run.verifyPrevious).toMatchObject({ ok: true, commit: good });
    expect(run.probe).toMatchObject({ failed: 0 });
    // Swarm was satisfied (the health check passed); the deployer put the previous image back.
    expect(run.deploys.map((d: any) => d.outcome)).toEqual(['succeeded', 'rolled_back']);
    expect(await serviceImage(www)).toBe(goodImage);
    expect(await edgeRevision()).toBe(good);
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'site');
    expect(p.deployed.commit).toBe(good); // the deployment record did not advance
    expect(await runLog(url, run.id)).toMatch(/NOT verified at the edge/);
  });

  it('a rollback to a deployment whose manifest is gone answers 409 naming the image, before touching anything', async () => {
    const next = await push('next', revisionSite());
    expect(next.status, next.error).toBe('succeeded');
    const [p] = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).filter((x: any) => x.name === 'site');
    const history = (await (await fetch(`${url}/api/pipelines/site/deployments`, AUTH)).json()) as any[];
    const target = history.find((d) => d.commit === commits.good)!;
    expect(target).toBeDefined();
    await deleteManifest(world.registry, target.image);

    // The periodic check (every 1 s here) notices, and the pipeline page says so.
    await waitUntil('the pipeline page shows the missing target', async () => /image gone from the registry/.test(await (await fetch(`${url}/pipelines/site`, AUTH)).text()), 20_000, 250);
    const api = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).find((x: any) => x.name === 'site');
    expect(api.rollbackTargets.find((t: any) => t.deployment === target.id)).toMatchObject({ state: 'missing' });

    const before = await serviceImage(www);
    const runsBefore = (await (await fetch(`${url}/api/pipelines/site/runs`, AUTH)).json()).runs.length;
    const res = await fetch(`${url}/api/pipelines/site/rollback`, { method: 'POST', headers: { ...AUTH_HEADER, 'content-type': 'application/json' }, body: JSON.stringify({ deployment: target.id }) });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: string };
    expect(body.error).toContain(manifestRefOf(target.image)!.repository);
    expect(body.error).toMatch(/not in the registry/);
    // Nothing changed: same image, no run, not paused.
    expect(await serviceImage(www)).toBe(before);
    expect((await (await fetch(`${url}/api/pipelines/site/runs`, AUTH)).json()).runs.length).toBe(runsBefore);
    const after = (await (await fetch(`${url}/api/pipelines`, AUTH)).json()).find((x: any) => x.name === 'site');
    expect(after.paused).toBe(false);
    expect(after.deployed.commit).toBe(p.deployed.commit);
  });

  it('stop-first: the probe sees the outage, and with maxFailed 0 the run is rolled back', async () => {
    // The same pipeline, reconfigured (a restart with another config).
    await daemon.close();
    const stopFirst = configWith('stop-first');
    others.push(stopFirst);
    daemon = await startDaemon(stopFirst, { http: true, worker: true, port: 0 });
    url = daemon.url!;
    const before = await serviceImage(www);
    const run = await push('stop-first', revisionSite());
    expect(run.status, run.error).toBe('rolled_back');
    expect(run.probe.failed).toBeGreaterThan(0);
    expect(run.probe.longestGapMs).toBeGreaterThan(500);
    expect(run.error).toMatch(new RegExp(`^deploy: rolled back: the probe saw ${run.probe.failed} of ${run.probe.sent} requests fail during the rollout \\(at most 0 allowed`));
    expect(run.verify).toBeNull(); // the edge is not asked once the probe has failed the deploy
    expect(await serviceImage(www)).toBe(before);
  });
});
