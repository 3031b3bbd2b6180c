import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { AUTH } from '../helpers/config.ts';
import { startWorldDeployer, type WorldDeployer } from '../helpers/daemon.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import type { TestRegistry } from '../support/registry.ts';
import { exitingContainerFiles, failingBuildFiles, git, siteFiles, type SiteRepo } from '../support/site.ts';
import { serviceContents, serviceImage, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/site';

/**
 * The whole path on the real engine: a signed push → fetch from a real git repo →
 * docker build → push to an htpasswd registry → swarm service update pinned by digest
 * → the service serves the new content over HTTP. Then the failures that must leave
 * the previous version serving.
 */
describe('deploy engine end to end (real git, Docker, registry, swarm)', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;
  let service: string;
  let imageRepo: string;
  let config: Config;
  let url: string;
  let servedB = '';
  let deployer: WorldDeployer | undefined;

  beforeAll(async () => {
    deployer = await startWorldDeployer({
      world: { name: 'e2e', services: ['e2e-www'] },
      prepare: (w) => waitForContent(w.services[0]!, 'seed\n', 30_000),
      pipelines: (w) => [
        { name: 'site', repo: REPO, url: w.repo.url, branch: 'main', image: w.image, tag: 'live', services: [w.services[0]!], deploy: { monitor: '2s', timeout: '90s' } },
        { name: 'ghost', repo: REPO, url: w.repo.url, branch: 'ghost', image: w.image, tag: 'ghost', services: [`${w.services[0]!}-missing`] },
      ],
    });
    ({ config, url } = deployer);
    ({ registry, repo, imageRepo } = deployer.world);
    service = deployer.world.services[0]!;
  });

  afterAll(() => deployer?.close());

  async function pushAndRun(files: Record<string, string | null>, message: string): Promise<{ sha: string; run: any }> {
    const sha = await repo.commit(files, message);
    const res = await deliver(url, pushPayload(REPO, 'main', sha, message));
    expect(res.status).toBe(202);
    expect(res.body.runs).toHaveLength(1);
    return { sha, run: await waitForRun(url, res.body.runs[0]) };
  }

  it('deploys commit A: succeeded, serving A, spec pinned by digest', async () => {
    const { sha, run } = await pushAndRun(siteFiles('version A\n'), 'version A');
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect(run.commit).toBe(sha);
    expect(run.stages.map((s: any) => [s.name, s.status])).toEqual([['fetch', 'succeeded'], ['build', 'succeeded'], ['push', 'succeeded'], ['deploy', 'succeeded']]);
    for (const s of run.stages) expect(Date.parse(s.finishedAt)).toBeGreaterThanOrEqual(Date.parse(s.startedAt));
    expect(run.image.ref).toMatch(new RegExp(`^${registry.host}/${imageRepo}:live@sha256:[0-9a-f]{64}$`));
    expect(run.image.ref.endsWith(run.image.digest)).toBe(true);
    await waitForContent(service, 'version A\n', 30_000);
    expect(await serviceImage(service)).toBe(run.image.ref);

    const log = await runLog(url, run.id);
    expect(log).toContain(`checked out ${sha.slice(0, 12)}`);
    expect(log).toMatch(/^#\d+ \[\d+\/\d+\] COPY www \/www$/m); // BuildKit's steps, rendered as --progress=plain
    expect(log).toContain(`pushed ${registry.host}/${imageRepo}:live ${run.image.digest}`);
    expect(log).toContain('converged');
    expect(log).not.toContain(registry.password);

    const [pipeline] = await (await fetch(`${url}/api/pipelines`, AUTH)).json();
    expect(pipeline.deployed).toMatchObject({ commit: sha, image: run.image.ref, digest: run.image.digest });
    expect(pipeline.lastRun).toMatchObject({ id: run.id, status: 'succeeded' });
  });

  it('deploys commit B the same way', async () => {
    const { sha, run } = await pushAndRun(siteFiles('version B\n'), 'version B');
    expect(run.status).toBe('succeeded');
    await waitForContent(service, 'version B\n', 30_000);
    servedB = await serviceImage(service);
    expect(servedB).toBe(run.image.ref);
    const deployments = await (await fetch(`${url}/api/pipelines/site/deployments`, AUTH)).json();
    expect(deployments[0]).toMatchObject({ commit: sha, service, replacedAt: null });
    expect(deployments[1].replacedAt).not.toBeNull();
  });

  it('fails a broken build at "build" with the daemon\'s message, and B keeps serving', async () => {
    const { run } = await pushAndRun(failingBuildFiles(), 'broken build');
    expect(run.status).toBe('failed');
    const build = run.stages.find((s: any) => s.name === 'build');
    expect(build.status).toBe('failed');
    expect(build.error).toMatch(/echo about to fail; exit 3.*did not complete successfully: exit code: 3/);
    expect(run.error).toMatch(/^build: /);
    expect(run.stages.filter((s: any) => s.name === 'push' || s.name === 'deploy').map((s: any) => s.status)).toEqual(['skipped', 'skipped']);
    expect(await runLog(url, run.id)).toContain('about to fail');
    expect(await serviceImage(service)).toBe(servedB);
    expect(await serviceContents(service)).toEqual(['version B\n']);
  });

  it('a container that exits at once at "deploy": swarm rolls it back, the run ends rolled_back, and B keeps serving', async () => {
    const { run } = await pushAndRun(exitingContainerFiles('version C\n'), 'container exits');
    expect(run.status).toBe('rolled_back');
    const deploy = run.stages.find((s: any) => s.name === 'deploy');
    expect(deploy.status).toBe('failed');
    expect(run.error).toMatch(/^deploy: /);
    expect(run.error).toMatch(/rolled the service back|paused/);
    expect(run.deploys).toMatchObject([{ service, outcome: 'rolled_back', image: servedB, previousImage: servedB }]);
    expect(await runLog(url, run.id)).toMatch(/task error: .*exit/);
    expect(await runLog(url, run.id)).toContain('has no health check'); // said in the run log too
    await waitForContent(service, 'version B\n', 30_000);
    expect(await serviceImage(service)).toBe(servedB);
    const [pipeline] = await (await fetch(`${url}/api/pipelines`, AUTH)).json();
    expect(pipeline.deployed.image).toBe(servedB);
  });

  it('check-config inspects the target services and warns about what makes deploys lie', async () => {
    const { execFile } = await import('node:child_process');
    const { testEnv } = await import('../helpers/config.ts');
    const out = await new Promise<string>((resolve, reject) =>
      execFile('bin/deployer', ['check-config', '--config', config.file], { env: testEnv(registry.password) }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    // The test service has no health check; the ghost pipeline's service does not exist.
    expect(out).toContain(`warning: site: ${service} has no health check`);
    expect(out).toContain(`warning: ghost: service ${service}-missing does not exist`);
    expect(out).not.toContain(registry.password);
  });

  it('fails clearly when a target service does not exist', async () => {
    await repo.commit(siteFiles('ghost\n'), 'ghost');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/ghost'], repo.workDir);
    const sha = (await git(['rev-parse', 'HEAD'], repo.workDir)).trim();
    const res = await deliver(url, pushPayload(REPO, 'ghost', sha));
    const run = await waitForRun(url, res.body.runs[0]);
    expect(run.status).toBe('failed');
    expect(run.error).toBe(`deploy: service "${service}-missing" does not exist on this swarm`);
  });
});
