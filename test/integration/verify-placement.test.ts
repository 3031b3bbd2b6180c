import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { SwarmDeployer } from '../../src/docker/service-deployer.ts';
import { DeployerError } from '../../src/lib/errors.ts';
import { Secret } from '../../src/lib/secret.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
import { freePort } from '../helpers/process.ts';
import { runLog } from '../helpers/runs.ts';
import { createWorld, deployCommit, disposeQueues, type World } from '../helpers/world.ts';
import { copyBusybox, siteFiles } from '../support/site.ts';
import { dockerCli, removeTestResources, uniqueName } from '../support/swarm.ts';

const REPO = 'acme/placement';
const docker = new Docker();

/** The whole spec and its version: "unchanged" means both are exactly as before. */
async function specOf(name: string): Promise<{ version: number; spec: unknown }> {
  const info = (await docker.getService(name).inspect()) as { Version: { Index: number }; Spec: unknown };
  return { version: info.Version.Index, spec: info.Spec };
}

const stage = (run: any, name: string) => run.stages.find((s: any) => s.name === name);
const stageMs = (run: any, name: string) => Date.parse(stage(run, name).finishedAt) - Date.parse(stage(run, name).startedAt);

/**
 * Issue #15, item 3: an update swarm could never place fails at deploy within seconds,
 * naming the resource, and leaves the service exactly as it was — instead of waiting
 * for deploy.timeout (set to 2 minutes here, so a slow path could not pass).
 */
describe('placement pre-check on the real swarm', () => {
  let world: World;
  let config: Config;
  let daemon: Daemon;
  let url: string;
  const svc = { memory: uniqueName('pl-memory'), port: uniqueName('pl-port') };

  beforeAll(async () => {
    world = await createWorld({ name: 'pl' });
    const nodes = (await docker.listNodes()) as { Description: { Resources: { MemoryBytes: number } } }[];
    const most = Math.max(...nodes.map((n) => n.Description.Resources.MemoryBytes));
    // More than any node has in all: its task can never be placed (it stays pending, so
    // it reserves nothing and disturbs no one else on this shared engine).
    const reserve = Math.ceil(most / 1024 ** 3) + 8;
    const common = ['service', 'create', '--detach', '--quiet', '--with-registry-auth', '--init', '--label', 'deployer.test=1', '--stop-grace-period', '2s'];
    await dockerCli([...common, '--name', svc.memory, '--reserve-memory', `${reserve}g`, world.seedRef], { registry: world.registry });
    await dockerCli([...common, '--name', svc.port, '--publish', `mode=host,target=8080,published=${await freePort()}`, world.seedRef], { registry: world.registry });
    const slow = { monitor: '1s', timeout: '120s' };
    config = testConfig({
      registry: world.registryConfig,
      pipelines: [
        { name: 'memory', repo: REPO, url: world.repo.url, branch: 'memory', image: world.image, tag: 'memory', services: [svc.memory], deploy: slow },
        { name: 'port', repo: REPO, url: world.repo.url, branch: 'port', image: world.image, tag: 'port', services: [svc.port], deploy: slow },
      ],
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    url = daemon.url!;
  });

  afterAll(async () => {
    await daemon?.close();
    if (config) await disposeQueues(config);
    await removeTestResources([svc.memory, svc.port]).catch(() => undefined);
    await world?.dispose();
  });

  it('a service reserving more memory than any node has fails at deploy in seconds, naming the shortfall; spec unchanged', async () => {
    const before = await specOf(svc.memory);
    const run = await deployCommit(url, world, REPO, siteFiles('needs memory\n'), 'memory', 'memory');
    expect(run.status).toBe('failed');
    expect(stage(run, 'deploy').status).toBe('failed');
    expect(run.error).toMatch(/^deploy: cannot place a new task of pl-memory-[0-9a-f]+: memory: needs \d+ GiB reserved, the most free on any node is [\d.]+ GiB/);
    expect(run.error).toMatch(/the service was not changed/);
    expect(stageMs(run, 'deploy')).toBeLessThan(5_000);
    expect(await specOf(svc.memory)).toEqual(before);
  });

  it('start-first with a host-mode port on one node fails at once naming the port, instead of timing out', async () => {
    const before = await specOf(svc.port);
    const run = await deployCommit(url, world, REPO, siteFiles('needs the port\n'), 'port', 'port');
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/^deploy: cannot place a new task of pl-port-[0-9a-f]+: port \d+\/tcp \(host mode\) is already published on every eligible node/);
    expect(stageMs(run, 'deploy')).toBeLessThan(5_000);
    expect(await specOf(svc.port)).toEqual(before);
    const res = await fetch(`${url}/api/runs/${run.id}/log`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await res.text()).toMatch(/cannot place a new task/);
    expect(await runLog(url, run.id)).not.toMatch(/could not read the platforms/);
  });

  it('precheck() answers the same question without deploying (a fleet asks it for every service first)', async () => {
    const deployer = new SwarmDeployer(docker, [{ host: world.registry.host, username: world.registry.username, password: new Secret(world.registry.password) }]);
    const req = (service: string) => ({
      service, endpoint: config.docker, owner: { instance: config.instance, pipeline: 'memory' }, image: world.seedRef, registry: world.registry.host,
      settings: config.pipelines[0]!.deploy, signal: new AbortController().signal, log: () => undefined,
    });
    const before = await specOf(svc.memory);
    const err = await deployer.precheck(req(svc.memory)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeployerError);
    expect(err).toMatchObject({ code: 'placement_failed', retryable: false });
    expect(await specOf(svc.memory)).toEqual(before);
    // A service with room passes (stop-first frees the old task's port on its node).
    await expect(deployer.precheck({ ...req(svc.port), owner: { instance: config.instance, pipeline: 'port' }, settings: { ...config.pipelines[1]!.deploy, order: 'stop-first' } })).resolves.toBeUndefined();
  });

  it('an image built for another platform than any node is refused, naming both', async () => {
    // BuildKit builds a FROM scratch image for linux/arm64 without emulation (no RUN step).
    const dir = await mkdtemp(join(tmpdir(), 'test-arm-'));
    const tag = `${world.image}:arm64`;
    let digest: string;
    try {
      await copyBusybox(dir);
      await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox","httpd","-f","-p","8080"]\n');
      await dockerCli(['buildx', 'build', '--platform', 'linux/arm64', '--label', 'deployer.test=1', '--tag', tag, '--load', dir]);
      digest = /digest: (sha256:[0-9a-f]{64})/.exec(await dockerCli(['push', tag], { registry: world.registry }))![1]!;
    } finally {
      await dockerCli(['image', 'rm', tag]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
    const deployer = new SwarmDeployer(docker, [{ host: world.registry.host, username: world.registry.username, password: new Secret(world.registry.password) }]);
    const before = await specOf(svc.port);
    const result = deployer.deploy({
      service: svc.port, endpoint: config.docker, owner: { instance: config.instance, pipeline: 'port' }, image: `${tag}@${digest}`, registry: world.registry.host,
      settings: { ...config.pipelines[1]!.deploy, order: 'stop-first' }, signal: new AbortController().signal, log: () => undefined,
    });
    await expect(result).rejects.toMatchObject({ code: 'placement_failed', message: expect.stringMatching(/platform: the image is linux\/arm64; the nodes are linux\/amd64/) });
    expect(await specOf(svc.port)).toEqual(before);
  });
});
