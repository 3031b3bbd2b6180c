import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerBuilder } from '../../src/docker/build.ts';
import type { RegistryConfig } from '../../src/config/types.ts';
import { Secret } from '../../src/lib/secret.ts';
import { manifestRefOf } from '../../src/pipeline/rollback-targets.ts';
import { RegistryManifests } from '../../src/registry/manifests.ts';
import { RollbackTargetWatcher } from '../../src/verify/targets.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { copyBusybox, siteFiles, writeFiles } from '../support/site.ts';
import { buildAndPush, cleanupLeftovers, dockerCli, uniqueName } from '../support/swarm.ts';

const creds = (r: TestRegistry, password = r.password): RegistryConfig[] => [{ host: r.host, username: r.username, password: new Secret(password) }];

/** Deletes a manifest as an operator's registry garbage collection would (delete is enabled in the test registry). */
async function deleteManifest(r: TestRegistry, ref: string): Promise<void> {
  const m = manifestRefOf(ref)!;
  const url = `http://${r.host}/v2/${m.repository}/manifests/${m.digest}`;
  let authorization = `Basic ${Buffer.from(`${r.username}:${r.password}`).toString('base64')}`;
  if (r.tokenServer) {
    const t = await fetch(`${r.tokenServer.realm}?service=${r.tokenServer.service}&scope=repository:${m.repository}:delete`, { headers: { authorization } });
    authorization = `Bearer ${((await t.json()) as { token: string }).token}`;
  }
  const res = await fetch(url, { method: 'DELETE', headers: { authorization } });
  if (res.status !== 202) throw new Error(`DELETE ${url}: ${res.status} ${await res.text()}`);
}

/**
 * Issue #15, item 4(b): rollback targets are checked in the registry with HEAD
 * /v2/<repo>/manifests/<digest>, answering the auth the registry demands: htpasswd basic
 * auth, and bearer tokens from the realm of a `WWW-Authenticate: Bearer` challenge
 * (a real distribution registry with token auth, verifying JWTs from our token service).
 */
describe('registry manifest checks against real registries', () => {
  let basic: TestRegistry;
  let token: TestRegistry;
  const refs: Record<string, string> = {};

  beforeAll(async () => {
    await cleanupLeftovers();
    [basic, token] = await Promise.all([startRegistry({ auth: true }), startRegistry({ auth: 'token' })]);
    const repo = uniqueName('rg-site');
    const [a, b, c] = await Promise.all([
      buildAndPush(basic, repo, siteFiles('kept\n')),
      buildAndPush(basic, repo, siteFiles('deleted\n')),
      buildAndPush(token, repo, siteFiles('behind a token\n')),
    ]);
    refs.kept = a.ref;
    refs.deleted = b.ref;
    refs.token = c.ref;
  });

  afterAll(async () => {
    await basic?.stop();
    await token?.stop();
  });

  it('basic auth: present, then missing once the manifest is deleted; the other image is untouched', async () => {
    const checker = new RegistryManifests(creds(basic));
    expect(await checker.check(manifestRefOf(refs.deleted!)!)).toEqual({ state: 'present' });
    await deleteManifest(basic, refs.deleted!);
    const gone = await checker.check(manifestRefOf(refs.deleted!)!);
    expect(gone).toEqual({ state: 'missing', detail: `${refs.deleted} is not in the registry (404)` });
    expect(await checker.check(manifestRefOf(refs.kept!)!)).toEqual({ state: 'present' });
  });

  it('the watcher checks the last N deployments of each pipeline and reports a missing one', async () => {
    const deployments = [
      { id: 1, image: refs.deleted!, digest: manifestRefOf(refs.deleted!)!.digest, deployedAt: '2026-01-01T00:00:00Z' },
      { id: 2, image: refs.kept!, digest: manifestRefOf(refs.kept!)!.digest, deployedAt: '2026-01-02T00:00:00Z' },
    ];
    const logged: string[] = [];
    const watcher = new RollbackTargetWatcher({ check: new RegistryManifests(creds(basic)), list: () => [{ pipeline: 'site', deployments, protect: 5 }], intervalMs: 60_000, log: (m) => logged.push(m) });
    await watcher.checkAll();
    // (The manifest of `deleted` was removed by the test above.)
    expect(watcher.statusOf(refs.deleted!)).toMatchObject({ state: 'missing', image: refs.deleted });
    expect(watcher.statusOf(refs.kept!)).toMatchObject({ state: 'present' });
    expect(logged).toEqual([`rollback target gone: ${refs.deleted} is not in the registry (404)`]);
    // protect: 1 watches only the newest deployment.
    const one = new RollbackTargetWatcher({ check: new RegistryManifests(creds(basic)), list: () => [{ pipeline: 'site', deployments, protect: 1 }], intervalMs: 60_000 });
    await one.checkAll();
    expect(one.statusOf(refs.deleted!)).toBeUndefined();
    expect(one.statusOf(refs.kept!)).toMatchObject({ state: 'present' });
  });

  it('basic auth: wrong or missing credentials and an unreachable registry are "unknown", never "missing"', async () => {
    const wrong = await new RegistryManifests(creds(basic, 'not-the-password')).check(manifestRefOf(refs.kept!)!);
    expect(wrong).toEqual({ state: 'unknown', detail: expect.stringMatching(/refused the configured credentials .* \(401\)/) });
    expect(JSON.stringify(wrong)).not.toContain(basic.password);
    expect(await new RegistryManifests([]).check(manifestRefOf(refs.kept!)!)).toEqual({ state: 'unknown', detail: expect.stringMatching(/wants credentials and none are configured/) });
    const down = await startRegistry({ auth: false });
    const ref = { registry: down.host, repository: 'x/y', digest: `sha256:${'0'.repeat(64)}` };
    await down.stop();
    expect(await new RegistryManifests([]).check(ref)).toEqual({ state: 'unknown', detail: `could not reach ${down.host}: ECONNREFUSED` });
  });

  it('bearer token auth: follows the challenge to the realm with the configured credentials, scope pull', async () => {
    const checker = new RegistryManifests(creds(token));
    const ref = manifestRefOf(refs.token!)!;
    const before = token.tokenServer!.requests.length;
    expect(await checker.check(ref)).toEqual({ state: 'present' });
    const asked = token.tokenServer!.requests.slice(before);
    expect(asked).toEqual([{ service: token.tokenServer!.service, scopes: [`repository:${ref.repository}:pull`], user: token.username, status: 200 }]);
    // The token is reused while it lasts: a second check asks the token service nothing.
    expect(await checker.check(ref)).toEqual({ state: 'present' });
    expect(token.tokenServer!.requests.length).toBe(before + 1);
    await deleteManifest(token, refs.token!);
    expect(await checker.check(ref)).toEqual({ state: 'missing', detail: `${refs.token} is not in the registry (404)` });
  });

  it('bearer token auth: refused credentials or anonymous access to a private registry are "unknown"', async () => {
    const ref = manifestRefOf(refs.token!)!;
    expect(await new RegistryManifests(creds(token, 'wrong')).check(ref)).toEqual({ state: 'unknown', detail: expect.stringMatching(/token service of .* answered 401 \(credentials refused\)/) });
    expect(await new RegistryManifests([]).check(ref)).toEqual({ state: 'unknown', detail: expect.stringMatching(/token service of .* answered 401/) });
  });
});

/**
 * Issue #15, item 4(a): the deployer's own pruning of the build host never removes the
 * images of the last deployments (the `protect` list), whatever `keep` says.
 */
describe('image pruning keeps rollback targets', () => {
  let registry: TestRegistry;
  const docker = new Docker();
  let repo = '';

  beforeAll(async () => {
    registry = await startRegistry({ auth: true });
    repo = `${registry.host}/${uniqueName('pr-site')}`;
  });

  afterAll(async () => {
    const left = (await docker.listImages({ filters: { reference: [repo] } })) as { RepoTags?: string[] }[];
    for (const t of left.flatMap((i) => i.RepoTags ?? [])) await docker.getImage(t).remove().catch(() => undefined);
    await registry?.stop();
  });

  /** Builds and pushes `repo:tag`, keeping the local copy (as the deployer's build host does). */
  async function buildLocal(tag: string, content: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'test-prune-'));
    try {
      await copyBusybox(dir);
      await writeFiles(dir, siteFiles(content));
      await dockerCli(['build', '--quiet', '--label', 'deployer.test=1', '--tag', `${repo}:${tag}`, dir]);
      const out = await dockerCli(['push', `${repo}:${tag}`], { registry });
      return /digest: (sha256:[0-9a-f]{64})/.exec(out)![1]!;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('removes old images but not protected ones (matched by the pushed digest)', async () => {
    const nonce = uniqueName('n');
    const oldDigest = await buildLocal('one', `one ${nonce}\n`);
    await buildLocal('two', `two ${nonce}\n`);
    const removed = await new DockerBuilder(docker).prune(repo, 0, [`${repo}:live@${oldDigest}`]);
    const left = ((await docker.listImages({ filters: { reference: [repo] } })) as { RepoTags?: string[] }[]).flatMap((i) => i.RepoTags ?? []);
    expect(removed).toBe(1);
    expect(left).toEqual([`${repo}:one`]);
  });
});
