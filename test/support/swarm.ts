// Swarm fixtures for integration tests: seed images in the test registry,
// overlay networks and services shaped like the real site's `www` service,
// and a way to see what every task actually serves over HTTP.
//
// Writes go through the docker CLI (what an operator would type, and
// `--with-registry-auth` comes for free); reads go through dockerode because
// they are polled and need the raw JSON.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { baseEnv, run, sleep } from './exec.ts';
import type { TestRegistry } from './registry.ts';
import { copyBusybox, siteFiles, writeFiles } from './site.ts';
import type { FileMap } from './site.ts';

/** Everything the helpers create carries this label; cleanup touches nothing else. */
export const TEST_LABEL = 'deployer.test';
const LABEL_FILTER = `${TEST_LABEL}=1`;
const SITE_PORT = 8080;

const docker = new Docker(); // honours DOCKER_HOST=unix://…

const isNotFound = (err: unknown): boolean => (err as { statusCode?: number }).statusCode === 404;
const hasTestLabel = (labels: Record<string, string> | null | undefined): boolean => labels?.[TEST_LABEL] === '1';

/** Lowercase DNS-label-safe name (valid for services, networks, repos), ≤ 40 chars. */
export function uniqueName(prefix: string): string {
  let p = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  if (!/^[a-z]/.test(p)) p = `t${p}`;
  p = p.slice(0, 31).replace(/-$/, '');
  return `${p}-${randomBytes(4).toString('hex')}`;
}

/**
 * Runs the docker CLI with a throw-away DOCKER_CONFIG (never the user's
 * ~/.docker), logged in to `registry` when it has credentials.
 */
export async function dockerCli(
  args: string[],
  opts: { registry?: TestRegistry; cwd?: string; timeoutMs?: number } = {},
): Promise<string> {
  const configDir = await mkdtemp(join(tmpdir(), 'test-docker-config-'));
  // DOCKER_BUILDKIT=0: there is no buildx plugin here; say so instead of
  // letting the CLI probe for it on every build.
  const env = baseEnv({ DOCKER_CONFIG: configDir, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' });
  try {
    const { registry } = opts;
    if (registry && registry.username) {
      await run('docker', ['login', '--username', registry.username, '--password-stdin', registry.host], {
        env,
        input: registry.password,
      });
    }
    return await run('docker', args, { env, cwd: opts.cwd, timeoutMs: opts.timeoutMs });
  } finally {
    await rm(configDir, { recursive: true, force: true });
  }
}

export interface PushedImage {
  /** `host/repo@sha256:…`: immutable, what a service should run. */
  ref: string;
  digest: string;
}

/**
 * Builds `contextDir` with the CLI's classic builder and pushes it. The local
 * copy is removed afterwards so a service using the ref must really pull it
 * from the (authenticated) registry.
 */
export async function buildAndPushDir(registry: TestRegistry, repoName: string, contextDir: string): Promise<PushedImage> {
  const tag = `${registry.host}/${repoName}:t-${randomBytes(4).toString('hex')}`;
  await dockerCli(['build', '--quiet', '--force-rm', '--label', LABEL_FILTER, '--tag', tag, contextDir]);
  try {
    const out = await dockerCli(['push', tag], { registry });
    // "t-1234abcd: digest: sha256:… size: 943" is the only place the CLI
    // states the manifest digest it pushed.
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1];
    if (!digest) throw new Error(`no digest in docker push output: ${out}`);
    return { ref: `${registry.host}/${repoName}@${digest}`, digest };
  } finally {
    await dockerCli(['image', 'rm', tag]).catch(() => undefined);
  }
}

/** Builds a temp context (busybox + `files`) and pushes it. */
export async function buildAndPush(registry: TestRegistry, repoName: string, files: FileMap): Promise<PushedImage> {
  const dir = await mkdtemp(join(tmpdir(), 'test-build-'));
  try {
    await copyBusybox(dir);
    await writeFiles(dir, files);
    return await buildAndPushDir(registry, repoName, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The image a test service starts on, before the deployer takes over. */
export function buildAndPushSeed(registry: TestRegistry, repoName: string, content: string): Promise<PushedImage> {
  return buildAndPush(registry, repoName, siteFiles(content));
}

/** Attachable so a test may `docker run --network` a helper container on it. */
export async function createTestNetwork(name: string): Promise<string> {
  const out = await dockerCli(['network', 'create', '--driver', 'overlay', '--attachable', '--label', LABEL_FILTER, name]);
  return out.trim();
}

export interface TestServiceOptions {
  name: string;
  image: string;
  network: string;
  registry: TestRegistry;
  replicas?: number;
  /**
   * `true`: wget GET / on 127.0.0.1 (an IP: static busybox wget segfaults on
   * names and with -T). A string: your own CMD-SHELL command.
   */
  healthcheck?: boolean | string;
}

/**
 * A service shaped like the production `www` service: dnsrr on an overlay
 * (VIPs/ingress need IPVS, absent on this kernel), start-first with rollback
 * on failure, --init because busybox httpd as PID 1 ignores SIGTERM.
 * Resolves with the service ID once `replicas` tasks are running.
 */
export async function createTestService(opts: TestServiceOptions): Promise<string> {
  const replicas = opts.replicas ?? 1;
  const args = [
    'service', 'create', '--detach', '--quiet',
    '--name', opts.name,
    '--with-registry-auth',
    '--init',
    '--endpoint-mode', 'dnsrr',
    '--network', opts.network,
    '--replicas', String(replicas),
    '--update-order', 'start-first',
    '--update-failure-action', 'rollback',
    '--update-monitor', '2s',
    // Without these, a rollback would use stop-first and the 5 s default monitor.
    '--rollback-order', 'start-first',
    '--rollback-monitor', '2s',
    '--stop-grace-period', '2s',
    '--label', LABEL_FILTER,
    '--container-label', LABEL_FILTER,
  ];
  if (opts.healthcheck) {
    const cmd =
      typeof opts.healthcheck === 'string'
        ? opts.healthcheck
        : `wget -q -O /dev/null http://127.0.0.1:${SITE_PORT}/ || exit 1`;
    args.push('--health-cmd', cmd, '--health-interval', '500ms', '--health-timeout', '2s', '--health-retries', '2');
  }
  args.push(opts.image);
  const id = (await dockerCli(args, { registry: opts.registry })).trim();

  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if ((await runningTasks(opts.name)).length >= replicas) return id;
    await sleep(200);
  }
  const ps = await dockerCli(['service', 'ps', '--no-trunc', opts.name]).catch((e: Error) => e.message);
  throw new Error(`service ${opts.name} has not ${replicas} running task(s) after 60 s:\n${ps}`);
}

export interface TaskJson {
  ID: string;
  Slot?: number;
  DesiredState: string;
  Status: { State: string; Err?: string; ContainerStatus?: { ContainerID?: string } };
}

/** Tasks whose container is actually running (whatever their desired state). */
export async function runningTasks(serviceName: string): Promise<TaskJson[]> {
  // The `service` filter resolves an exact name (listServices' name filter is a prefix match).
  const tasks = (await docker.listTasks({ filters: { service: [serviceName] } })) as TaskJson[];
  // A task being shut down is already out of service DNS (swarm removes it 2 s before
  // stopping it), so clients no longer reach it: it is not "serving".
  return tasks
    .filter((t) => t.Status.State === 'running' && t.DesiredState === 'running')
    .sort((a, b) => (a.Slot ?? 0) - (b.Slot ?? 0) || a.ID.localeCompare(b.ID));
}

/*
 * HTTP reachability, chosen by trying the alternatives on this machine:
 * - ingress / VIP: no IPVS on this kernel, does not work at all;
 * - overlay IPs (task NetworksAttachments) from the host: NOT routed to the
 *   overlay; they go out the default route, where an egress interceptor
 *   answers any IP with a bogus empty 200 ("server: keryx"), so a naive probe
 *   "succeeds" with "" (or 404). Only reachable from inside the overlay, e.g.
 *   `docker exec probe wget` (works, ~90 ms per request, needs a probe
 *   container and image per network);
 * - docker_gwbridge: every swarm task on a non-internal overlay also gets an
 *   endpoint on the local docker_gwbridge (172.18.0.0/16 here), and the host
 *   owns that bridge's gateway address, so plain fetch() from the test
 *   process reaches each task directly (~2 ms), with real status codes.
 * We use docker_gwbridge, and refuse to probe unless its gateway is one of our
 * own addresses, so a remote DOCKER_HOST can never hit the interceptor instead.
 * Limit: a service only on `--internal` overlays has no gwbridge endpoint.
 */
export async function gwbridgeIps(): Promise<Map<string, string>> {
  const net = (await docker.getNetwork('docker_gwbridge').inspect()) as {
    IPAM?: { Config?: { Gateway?: string }[] };
    Containers?: Record<string, { IPv4Address?: string }>;
  };
  const gateway = net.IPAM?.Config?.[0]?.Gateway;
  const local = Object.values(networkInterfaces())
    .flat()
    .some((a) => a?.address === gateway);
  if (!gateway || !local) {
    throw new Error(`docker_gwbridge gateway ${gateway} is not a local address: is DOCKER_HOST another machine?`);
  }
  const ips = new Map<string, string>();
  for (const [containerId, ep] of Object.entries(net.Containers ?? {})) {
    const ip = ep.IPv4Address?.split('/')[0];
    if (ip) ips.set(containerId, ip);
  }
  return ips;
}

async function fetchRoot(ip: string): Promise<string> {
  let lastError: unknown;
  // A task is "running" as soon as its container starts, a few ms before
  // httpd listens: retry connection errors briefly.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const res = await fetch(`http://${ip}:${SITE_PORT}/`, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.status !== 200) throw new Error(`GET http://${ip}:${SITE_PORT}/ answered ${res.status}: ${body}`);
      return body;
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('GET ')) throw err;
      lastError = err;
      await sleep(150);
    }
  }
  throw new Error(`GET http://${ip}:${SITE_PORT}/ failed`, { cause: lastError });
}

/**
 * Body of GET / on port 8080 from EVERY running task, fetched over HTTP
 * (ordered by slot). "Running" includes old tasks whose desired state is
 * already shutdown but whose container still runs: during a start-first
 * update both versions serve, and the caller wants to see that.
 *
 * Swarm keeps reporting a task as running for ~2.5 s after its container
 * died, and docker_gwbridge hands the freed IP to the next container at once
 * (seen: a dead task "served" another test's site). So every answer only
 * counts if the task's container is still running AFTER the fetch: then it
 * held that IP all along. Answers from dead containers are left out; a live
 * container that does not answer makes this throw.
 */
export async function serviceContents(serviceName: string): Promise<string[]> {
  const tasks = await runningTasks(serviceName);
  if (tasks.length === 0) return [];
  const ips = await gwbridgeIps();
  const answers = await Promise.all(
    tasks.map(async (t): Promise<string | undefined> => {
      const containerId = t.Status.ContainerStatus?.ContainerID;
      if (!containerId) return undefined; // not started yet
      const ip = ips.get(containerId);
      let body: string | undefined;
      let failure: unknown;
      try {
        if (!ip) throw new Error(`task ${t.ID} (container ${containerId}) has no docker_gwbridge IP`);
        body = await fetchRoot(ip);
      } catch (err) {
        failure = err;
      }
      if (!(await containerRunning(containerId))) return undefined;
      if (failure !== undefined) throw failure;
      return body;
    }),
  );
  return answers.filter((a): a is string => a !== undefined);
}

async function containerRunning(id: string): Promise<boolean> {
  try {
    const info = await docker.getContainer(id).inspect();
    return info.State.Running && !info.State.Restarting;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** Polls until there is at least one running task and all of them serve exactly `expected`. */
export async function waitForContent(serviceName: string, expected: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'nothing observed yet';
  for (;;) {
    try {
      const contents = await serviceContents(serviceName);
      if (contents.length > 0 && contents.every((c) => c === expected)) return;
      last = `contents ${JSON.stringify(contents)}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) break;
    await sleep(250);
  }
  throw new Error(
    `service ${serviceName} did not serve ${JSON.stringify(expected)} from every running task within ${timeoutMs} ms; last: ${last}`,
  );
}

/** What the service is told to run (`Spec.TaskTemplate.ContainerSpec.Image`). */
export async function serviceImage(serviceName: string): Promise<string> {
  const svc = (await docker.getService(serviceName).inspect()) as {
    Spec?: { TaskTemplate?: { ContainerSpec?: { Image?: string } } };
  };
  const image = svc.Spec?.TaskTemplate?.ContainerSpec?.Image;
  if (!image) throw new Error(`service ${serviceName} has no ContainerSpec.Image`);
  return image;
}

/**
 * Removes the named services, containers and networks (any mix), but only
 * those carrying the test label. Networks last, once their tasks are gone.
 */
export async function removeTestResources(names: string[]): Promise<void> {
  const errors: unknown[] = [];
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      if (!isNotFound(err)) errors.push(err);
    }
  };
  for (const name of names) {
    await attempt(async () => {
      const svc = docker.getService(name);
      const info = (await svc.inspect()) as { Spec?: { Labels?: Record<string, string> } };
      if (hasTestLabel(info.Spec?.Labels)) await svc.remove();
    });
    await attempt(async () => {
      const c = docker.getContainer(name);
      if (hasTestLabel((await c.inspect()).Config.Labels)) await c.remove({ force: true });
    });
  }
  for (const name of names) await attempt(() => removeNetwork(name, 30_000));
  if (errors.length > 0) throw new AggregateError(errors, `removeTestResources(${names.join(', ')}) failed`);
}

async function removeNetwork(name: string, timeoutMs: number): Promise<void> {
  const net = docker.getNetwork(name);
  const info = (await net.inspect()) as { Labels?: Record<string, string> };
  if (!hasTestLabel(info.Labels)) return;
  // While the removed service's containers are still stopping, the network
  // has active endpoints: retry until it is really gone.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await net.remove();
    } catch (err) {
      if (isNotFound(err)) return;
      if (Date.now() >= deadline) throw err;
    }
    try {
      await net.inspect();
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (Date.now() >= deadline) throw new Error(`network ${name} still exists after ${timeoutMs} ms`);
    await sleep(250);
  }
}

/**
 * Removes labelled services, containers, networks and images older than
 * `maxAgeMs`, so a run killed half-way cannot break a later one, while
 * resources of a concurrent run (younger) are left alone. Best effort.
 */
export async function cleanupLeftovers(
  maxAgeMs = 30 * 60_000,
): Promise<{ services: number; containers: number; networks: number; images: number }> {
  const cutoff = Date.now() - maxAgeMs;
  const filters = { label: [LABEL_FILTER] };
  const count = { services: 0, containers: 0, networks: 0, images: 0 };
  const tryRemove = async (kind: keyof typeof count, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
      count[kind]++;
    } catch {
      // In use or already gone: the next cleanup gets another chance.
    }
  };

  for (const s of await docker.listServices({ filters })) {
    if (s.ID && s.CreatedAt && Date.parse(s.CreatedAt) < cutoff) {
      await tryRemove('services', () => docker.getService(s.ID!).remove());
    }
  }
  for (const c of await docker.listContainers({ all: true, filters })) {
    if (c.Created * 1000 < cutoff) await tryRemove('containers', () => docker.getContainer(c.Id).remove({ force: true }));
  }
  for (const n of await docker.listNetworks({ filters })) {
    if (Date.parse(n.Created) < cutoff) await tryRemove('networks', () => docker.getNetwork(n.Id).remove());
  }
  for (const img of await docker.listImages({ filters })) {
    if (img.Created * 1000 >= cutoff) continue;
    // An image with several tags cannot be removed by ID without force: untag first.
    for (const tag of img.RepoTags ?? []) {
      if (tag !== '<none>:<none>') await docker.getImage(tag).remove().catch(() => undefined);
    }
    await tryRemove('images', () => docker.getImage(img.Id).remove());
  }
  return count;
}
