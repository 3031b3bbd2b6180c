// Proves the integration-test helpers against the real engine, registry and
// git before any deployer test relies on them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry } from './support/registry.ts';
import type { TestRegistry } from './support/registry.ts';
import { createSiteRepo, exitingContainerFiles, failingBuildFiles, git, siteFiles } from './support/site.ts';
import type { SiteRepo } from './support/site.ts';
import {
  buildAndPush,
  buildAndPushDir,
  buildAndPushSeed,
  cleanupLeftovers,
  createTestNetwork,
  createTestService,
  dockerCli,
  removeTestResources,
  serviceContents,
  serviceImage,
  uniqueName,
  waitForContent,
} from './support/swarm.ts';

const MANIFEST_TYPES = 'application/vnd.docker.distribution.manifest.v2+json';

describe('test support helpers', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;

  beforeAll(async () => {
    await cleanupLeftovers();
    registry = await startRegistry();
    repo = await createSiteRepo();
  }, 60_000);

  afterAll(async () => {
    await registry?.stop();
    await repo?.cleanup();
  }, 30_000);

  it('registry demands the random credentials and stores what was pushed', async () => {
    expect(registry.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect((await fetch(`http://${registry.host}/v2/`)).status).toBe(401);
    const basic = `Basic ${Buffer.from(`${registry.username}:${registry.password}`).toString('base64')}`;
    const wrong = `Basic ${Buffer.from(`${registry.username}:nope`).toString('base64')}`;
    expect((await fetch(`http://${registry.host}/v2/`, { headers: { authorization: wrong } })).status).toBe(401);
    expect((await fetch(`http://${registry.host}/v2/`, { headers: { authorization: basic } })).status).toBe(200);

    const repoName = uniqueName('smoke-reg');
    const seed = await buildAndPushSeed(registry, repoName, 'registry check\n');
    expect(seed.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(seed.ref).toBe(`${registry.host}/${repoName}@${seed.digest}`);
    const res = await fetch(`http://${registry.host}/v2/${repoName}/manifests/${seed.digest}`, {
      headers: { authorization: basic, accept: MANIFEST_TYPES },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(seed.digest);
    // delete.enabled: true
    const del = await fetch(`http://${registry.host}/v2/${repoName}/manifests/${seed.digest}`, {
      method: 'DELETE',
      headers: { authorization: basic },
    });
    expect(del.status).toBe(202);

    const open = await startRegistry({ auth: false });
    try {
      expect((await fetch(`http://${open.host}/v2/`)).status).toBe(200);
      expect(open.username).toBe('');
    } finally {
      await open.stop();
    }
    await expect(fetch(`http://${open.host}/v2/`)).rejects.toThrow();
  }, 60_000);

  it('a failing build fails and an exiting image exits', async () => {
    const repoName = uniqueName('smoke-bad');
    await expect(buildAndPush(registry, repoName, failingBuildFiles())).rejects.toThrow(/non-zero code: 3/);
    const exiting = await buildAndPush(registry, repoName, exitingContainerFiles('never\n'));
    // Pulled from the authed registry: the local copy was removed after the push.
    await expect(
      dockerCli(['run', '--rm', '--label', 'deployer.test=1', exiting.ref], { registry }),
    ).rejects.toThrow(/exiting/);
  }, 120_000);

  it('seeds a service, sees every task serve it, follows a manual update', async () => {
    const repoName = uniqueName('smoke-site');
    const network = uniqueName('smoke-net');
    const service = uniqueName('smoke-svc');
    try {
      const seed = await buildAndPushSeed(registry, repoName, 'seed v1\n');
      await createTestNetwork(network);
      await createTestService({ name: service, image: seed.ref, network, registry, replicas: 2, healthcheck: true });
      expect(await serviceImage(service)).toBe(seed.ref);
      await waitForContent(service, 'seed v1\n', 30_000);
      expect(await serviceContents(service)).toEqual(['seed v1\n', 'seed v1\n']);
      await expect(waitForContent(service, 'something else', 1_000)).rejects.toThrow(/did not serve/);

      // The second image comes from a real commit of the site repo, checked out like the deployer would.
      const sha = await repo.commit(siteFiles('site v2\n'), 'site v2');
      expect(sha).toMatch(/^[0-9a-f]{40}$/);
      const checkout = await mkdtemp(join(tmpdir(), 'test-checkout-'));
      try {
        await git(['init', '--quiet'], checkout);
        await git(['fetch', '--quiet', '--depth', '1', repo.url, sha], checkout);
        await git(['checkout', '--quiet', '--detach', 'FETCH_HEAD'], checkout);
        expect(await git(['ls-files', '-s', 'busybox'], checkout)).toMatch(/^100755 /);
        const v2 = await buildAndPushDir(registry, repoName, checkout);

        const started = Date.now();
        await dockerCli(['service', 'update', '--detach', '--quiet', '--with-registry-auth', '--image', v2.ref, service], {
          registry,
        });
        await waitForContent(service, 'site v2\n', 60_000);
        console.log(`manual update served everywhere after ${Date.now() - started} ms`);
        expect(await serviceImage(service)).toBe(v2.ref);
        expect(await serviceContents(service)).toEqual(['site v2\n', 'site v2\n']);
      } finally {
        await rm(checkout, { recursive: true, force: true });
      }
    } finally {
      await removeTestResources([service, network]);
    }
    await expect(serviceImage(service)).rejects.toThrow();
  }, 120_000);
});
