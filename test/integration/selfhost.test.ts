import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerBuilder } from '../../src/docker/build.ts';
import { isTerminal, type RunStatus } from '../../src/pipeline/states.ts';
import { ADMIN_TOKEN, AUTH, AUTH_HEADER, WEBHOOK_SECRET } from '../helpers/config.ts';
import { pushPayload, sign } from '../helpers/github.ts';
import { createWorld, type World } from '../helpers/world.ts';
import { git, gitEnv, siteFiles, writeFiles } from '../support/site.ts';
import { gwbridgeIps, runningTasks, uniqueName, waitForContent } from '../support/swarm.ts';

/**
 * The deployer run the way operators run it: its image built by scripts/image.sh (on the
 * local base images from Debian packages when Docker Hub is out of reach), deploy/stack.yml
 * deployed with `docker stack deploy`, docker-compose.yml with `docker compose up`. The
 * shipped files are used as they are; a test override only adds the demo repository's
 * mount and the test label. One stack serves every stack check.
 */
const exec = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const docker = new Docker();
const UID = 10001;
const REPO = 'local/demo-site';
/** The deployer's own sources, as the pipeline that deploys the deployer fetches them. */
const SELF_REPO = 'local/deployer';
const IMAGE_LABEL = 'deployer.test.selfhost-built';

const socketPath = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');
const dockerGid = () => String(statSync(socketPath).gid);

/** The docker CLI (and compose) with a throw-away client config and the stack's variables. */
async function cli(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await exec('docker', args, {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH, DOCKER_HOST: process.env.DOCKER_HOST, DOCKER_CONFIG: dockerConfig, DOCKER_CLI_HINTS: 'false', ...opts.env },
      timeout: opts.timeoutMs ?? 180_000,
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`docker ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

const work = mkdtempSync(join(tmpdir(), 'selfhost-'));
const dockerConfig = join(work, 'docker-config');
const image = `deployer-selfhost-test:${randomBytes(6).toString('hex')}`;
const stack = uniqueName('selfhost');
const project = uniqueName('selfhost-compose');
let world: World;
let stackEnv: Record<string, string>;
let nodeBase: string;
/** The deployer's sources in a repository of their own: bare (mounted into the workers) and a work tree. */
const selfRepo = { bare: join(work, 'deployer.git'), dir: join(work, 'deployer-src') };
const selfImage = () => `${world.registry.host}/selfdeploy-${stack}`;
/**
 * The previous release, to upgrade from: main before the run lifecycle (#10), the last
 * state without migration 005 (so the upgrade runs a migration on a store with history).
 * Its sources, built with this Dockerfile (its own could not be built here). Replace with
 * the latest release tag once there are tags.
 */
const PREVIOUS = 'c240de6902c83fdc80b0190f18f8e546b5778f12';
const previousImage = `${image}-previous`;

/** The config and its secret files, laid out as deploy/ has them. */
function writeDeployDir(dir: string, w: World, service: string, opts: { self?: boolean } = {}): void {
  mkdirSync(join(dir, 'secrets'), { recursive: true });
  const secrets = { github_webhook_secret: WEBHOOK_SECRET, deployer_admin_token: ADMIN_TOKEN, registry_password: w.registry.password };
  for (const [name, value] of Object.entries(secrets)) {
    const file = join(dir, 'secrets', name);
    writeFileSync(file, value);
    // Compose bind-mounts secret files as they are: readable by the deployer's uid only.
    chownSync(file, UID, UID);
    chmodSync(file, 0o400);
  }
  writeFileSync(
    join(dir, 'deployer.yaml'),
    `listen: 0.0.0.0:8090
publicUrl: http://${stack}.invalid
dataDir: /var/lib/deployer
redis: redis://redis:6379
github:
  webhookSecretFile: /run/secrets/github_webhook_secret
auth:
  adminTokenFile: /run/secrets/deployer_admin_token
docker:
  host: unix:///var/run/docker.sock
registries:
  - host: ${w.registry.host}
    username: ${w.registry.username}
    passwordFile: /run/secrets/registry_password
pipelines:
  - name: demo
    repo: ${REPO}
    url: file:///srv/git/site.git
    image: ${w.image}
    tag: live
    services: [${service}]
    deploy: { monitor: 1s, timeout: 2m }
    poll: false
${opts.self ? selfPipeline() : ''}`,
  );
}

/** The deployer deploying itself: its store side and its deploying worker. */
function selfPipeline(): string {
  return `  - name: self
    repo: ${SELF_REPO}
    url: file:///srv/git/deployer.git
    image: ${selfImage()}
    tag: live
    build: { args: { BASE_IMAGE: "${nodeBase}" } }
    services: [${stack}_web, ${stack}_worker-manager]
    deploy: { order: start-first, monitor: 5s, timeout: 4m }
    poll: false
`;
}

/** Phase timings, printed: this file is among the slowest of the suite. */
const t0 = Date.now();
const phase = (what: string) => console.log(`[selfhost +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);

beforeAll(async () => {
  mkdirSync(dockerConfig);
  // The image as operators build it. Not labelled deployer.test=1: a fully cached build
  // keeps the `Created` time of its last layer, possibly long ago, and cleanupLeftovers
  // (of any test run on this engine) would take it for a leftover. Its own label instead,
  // with the build time, to remove what a killed run left.
  for (const img of await docker.listImages({ filters: { label: [IMAGE_LABEL] } })) {
    if (Number(img.Labels?.[IMAGE_LABEL]) < Date.now() - 30 * 60_000) await docker.getImage(img.Id).remove({ force: true }).catch(() => undefined);
  }
  // Volumes a killed run left (cleanupLeftovers does not look at volumes); in use = not left.
  for (const v of (await docker.listVolumes({ filters: { label: ['deployer.test=1'] } })).Volumes ?? []) {
    const created = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '');
    if (created < Date.now() - 30 * 60_000) await docker.getVolume(v.Name).remove().catch(() => undefined);
  }
  await exec(join(root, 'scripts', 'image.sh'), [image, '--quiet', '--label', `${IMAGE_LABEL}=${Date.now()}`], {
    env: { ...process.env, DOCKER_CONFIG: dockerConfig },
    timeout: 15 * 60_000,
    maxBuffer: 32 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`scripts/image.sh failed: ${err.stderr || err.message}`);
  });
  phase(`image built: ${image}`);
  world = await createWorld({ name: 'selfhost', services: [{ prefix: 'demo', healthcheck: true }] });
  phase('demo world ready (registry, repository, service)');
  // git refuses a repository owned by another user ("dubious ownership"): the bare
  // repository mounted into the containers belongs to the deployer's uid (the directory
  // itself is what git checks), and the test's own pushes into it trust it explicitly.
  chownSync(world.repo.bareDir, UID, UID);
  writeFileSync(join(work, 'gitconfig'), '[safe]\n\tdirectory = *\n');
  // Already built by image.sh: a check, and the names.
  const bases = (await exec(join(root, 'scripts', 'base-images.sh'), [], { env: process.env })).stdout;
  const redisImage = bases.match(/^REDIS_IMAGE=(.+)$/m)?.[1];
  nodeBase = bases.match(/^NODE_BASE_IMAGE=(.+)$/m)?.[1] ?? '';
  if (!redisImage || !nodeBase) throw new Error(`scripts/base-images.sh printed no image names: ${bases}`);
  stackEnv = { DEPLOYER_IMAGE: image, REDIS_IMAGE: redisImage, DOCKER_GID: dockerGid(), DOCKER_SOCKET: socketPath };
  // The deployer's own repository: this commit's files (what CI checks out), one commit.
  mkdirSync(selfRepo.dir);
  await exec('sh', ['-c', 'git -C "$0" archive HEAD | tar -x -C "$1"', root, selfRepo.dir]);
  await git(['init', '--quiet', '--initial-branch=main'], selfRepo.dir);
  await git(['add', '--all'], selfRepo.dir);
  await git(['commit', '--quiet', '--no-verify', '-m', 'the deployer'], selfRepo.dir);
  await exec('git', ['clone', '--quiet', '--bare', selfRepo.dir, selfRepo.bare]);
  await git(['remote', 'add', 'origin', selfRepo.bare], selfRepo.dir);
  await exec('chown', ['-R', `${UID}:${UID}`, selfRepo.bare]);
  const previousDir = join(work, 'previous');
  mkdirSync(previousDir);
  await exec('sh', ['-c', `git -C "$0" archive ${PREVIOUS} | tar -x -C "$1"`, root, previousDir]);
  for (const f of ['Dockerfile', '.dockerignore']) copyFileSync(join(root, f), join(previousDir, f));
  await exec('docker', ['build', '--quiet', '--build-arg', `BASE_IMAGE=${nodeBase}`, '--build-arg', `SOURCE_COMMIT=${PREVIOUS}`, '--label', `${IMAGE_LABEL}=${Date.now()}`, '-t', previousImage, previousDir], {
    env: { ...process.env, DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: '1' },
    timeout: 10 * 60_000,
    maxBuffer: 32 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`building the previous release failed: ${err.stderr || err.message}`);
  });
  phase(`previous release built: ${previousImage}`);
}, 20 * 60_000);

afterAll(async () => {
  await cli(['stack', 'rm', stack]).catch(() => undefined);
  await compose(['down', '--volumes', '--timeout', '5']).catch(() => undefined);
  // Stack volumes outlive `stack rm`; they can go once the stack's containers have (a
  // worker may take its whole stop grace period, 1 min, to park its runs and exit).
  const deadline = Date.now() + 150_000;
  for (;;) {
    const left = (await cli(['volume', 'ls', '-q', '--filter', `label=com.docker.stack.namespace=${stack}`])).split('\n').filter(Boolean);
    if (left.length === 0) break;
    await cli(['volume', 'rm', ...left]).catch(() => undefined);
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  await world?.dispose();
  // The images the deployer built for the demo site (their repository is this test's
  // own), once the demo service's containers no longer use them.
  for (const until = Date.now() + 30_000; world && Date.now() < until; ) {
    const left = [...(await docker.listImages({ filters: { reference: [world.image] } })), ...(await docker.listImages({ filters: { reference: [selfImage()] } }))];
    if (left.length === 0) break;
    for (const img of left) await docker.getImage(img.Id).remove({ force: true }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
  }
  await cli(['image', 'rm', image, previousImage]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}, 240_000);

describe('the deployer image', () => {
  it('runs as non-root with a read-only root filesystem, with git and no compiler', async () => {
    const info = await docker.getImage(image).inspect();
    const mb = Math.round(info.Size / 1e6);
    console.log(`deployer image: ${mb} MB`);
    expect(info.Config.User).toBe(`${UID}:${UID}`);
    expect(info.Config.Entrypoint).toEqual(['/usr/bin/tini', '--', '/app/bin/deployer']);
    expect(info.Config.Healthcheck?.Test?.join(' ')).toContain('/healthz');
    const head = (await exec('git', ['rev-parse', 'HEAD'], { cwd: root })).stdout.trim();
    expect(info.Config.Labels['org.opencontainers.image.revision']).toBe(head);
    expect(info.Config.Labels['org.opencontainers.image.title']).toBe('deployer');

    const out = await cli([
      'run', '--rm', '--read-only', '--tmpfs', '/tmp', '--label', 'deployer.test=1', '--entrypoint', 'sh', image, '-c',
      'id -u; id -g; git --version; for c in gcc cc c++ make; do command -v $c; done; touch /app/x 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-ok',
    ]);
    const [uid, gid, git, ...rest] = out.trim().split('\n');
    expect([uid, gid]).toEqual([String(UID), String(UID)]);
    expect(git).toMatch(/^git version 2\./);
    expect(rest).toEqual(['read-only', 'tmp-ok']); // no compiler found, / not writable, /tmp is
  });

  it("builds with the deployer's own builder (BuildKit through the Engine API), .dockerignore applied", async () => {
    const tag = `${image}-self`;
    const files = (await exec('git', ['ls-files', '-z'], { cwd: root })).stdout.split('\0').filter(Boolean);
    const lines: string[] = [];
    const { imageId } = await new DockerBuilder(docker).build({
      contextDir: root, files, dockerfile: 'Dockerfile', target: undefined, tags: [tag], builder: 'buildkit',
      args: { BASE_IMAGE: nodeBase, SOURCE_COMMIT: 'f'.repeat(40) }, labels: { [IMAGE_LABEL]: String(Date.now()) },
      signal: AbortSignal.timeout(600_000), log: (l) => lines.push(l),
    });
    try {
      // Only what the image runs went in: package files, bin, src, migrations (and the Dockerfile).
      const sent = Number(/sending build context \((\d+) files\)/.exec(lines.join('\n'))?.[1]);
      const wanted = files.filter((f) => /^(package(-lock)?\.json|Dockerfile|\.dockerignore|(bin|src|migrations)\/.*)$/.test(f)).length;
      expect(sent, lines.join('\n')).toBe(wanted);
      const info = await docker.getImage(imageId).inspect();
      expect(info.Config.Labels['org.opencontainers.image.revision']).toBe('f'.repeat(40));
      expect(info.Config.Entrypoint).toEqual(['/usr/bin/tini', '--', '/app/bin/deployer']);
    } finally {
      await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
    }
  });
});

/** Commits the demo site serving `content` and pushes it to the bare repository; its sha. */
async function commit(content: string, message: string): Promise<string> {
  const dir = world.repo.workDir;
  await writeFiles(dir, siteFiles(content));
  await git(['add', '--all'], dir);
  await git(['commit', '--quiet', '--allow-empty', '--no-verify', '-m', message], dir);
  await exec('git', ['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], { cwd: dir, env: { ...gitEnv(), GIT_CONFIG_GLOBAL: join(work, 'gitconfig') } });
  return (await git(['rev-parse', 'HEAD'], dir)).trim();
}

/** http://<gwbridge address of the running web task>:8090 (no published port: see deploy/stack.yml). */
async function webUrl(): Promise<string> {
  const tasks = await runningTasks(`${stack}_web`);
  const ips = await gwbridgeIps();
  for (const t of tasks) {
    const ip = ips.get(t.Status.ContainerStatus?.ContainerID ?? '');
    if (ip) return `http://${ip}:8090`;
  }
  throw new Error(`no running task of ${stack}_web`);
}

async function webContainer(): Promise<string> {
  const id = (await runningTasks(`${stack}_web`))[0]?.Status.ContainerStatus?.ContainerID;
  if (!id) throw new Error(`no running task of ${stack}_web`);
  return id;
}

async function waitHealthy(container: () => Promise<string>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last = '';
  while (Date.now() - started < timeoutMs) {
    try {
      const info = await docker.getContainer(await container()).inspect();
      last = info.State.Health?.Status ?? 'no health';
      if (last === 'healthy') return Date.now() - started;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`not healthy within ${timeoutMs} ms: ${last}`);
}

/** A signed push of `sha`; the run ids when accepted (202), else undefined. */
async function push(sha: string, repo = REPO): Promise<string[] | undefined> {
  const body = JSON.stringify(pushPayload(repo, 'main', sha));
  try {
    const res = await fetch(`${await webUrl()}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomBytes(8).toString('hex'), 'x-hub-signature-256': sign(body, WEBHOOK_SECRET) },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    const json = (await res.json().catch(() => ({}))) as { runs?: string[] };
    return res.status === 202 && json.runs?.length ? json.runs : undefined;
  } catch {
    return undefined; // refused, reset or timed out: not accepted, GitHub would redeliver
  }
}

async function runOf(id: string): Promise<{ status: RunStatus; commit: string; error?: string }> {
  const res = await fetch(`${await webUrl()}/api/runs/${id}`, { headers: AUTH_HEADER, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET /api/runs/${id}: ${res.status}`);
  return (await res.json()) as { status: RunStatus; commit: string; error?: string };
}

async function waitFinished(id: string, timeoutMs: number): Promise<{ status: RunStatus; commit: string; error?: string }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const run = await runOf(id);
      last = run;
      if (isTerminal(run.status)) return run;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`run ${id} not finished within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** The store's applied migrations, read in the running web container (read-only). */
async function migrations(): Promise<{ version: number; name: string; applied_at: string }[]> {
  const js = `const db = new (require('node:sqlite').DatabaseSync)('/var/lib/deployer/deployer.db', { readOnly: true }); console.log(JSON.stringify(db.prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all()))`;
  return JSON.parse(await cli(['exec', await webContainer(), 'node', '-e', js]));
}

let history: { run: string; sha: string; migrations: { version: number; name: string; applied_at: string }[] };

describe('docker stack deploy -c deploy/stack.yml', () => {
  const dir = join(work, 'stack');

  beforeAll(async () => {
    writeDeployDir(dir, world, world.services[0]!, { self: true });
    copyFileSync(join(root, 'deploy', 'stack.yml'), join(dir, 'stack.yml'));
    // Only what a test needs on top: the demo repository, and the label cleanup looks for.
    const label = { 'deployer.test': '1' };
    writeFileSync(
      join(dir, 'test.yml'),
      JSON.stringify({
        services: {
          web: { deploy: { labels: label } },
          // On this single-node swarm (a manager) the builds run in worker-manager; `worker`
          // (worker nodes) has no task here.
          worker: { volumes: [`${world.repo.bareDir}:/srv/git/site.git:ro`, `${selfRepo.bare}:/srv/git/deployer.git:ro`], deploy: { labels: label } },
          'worker-manager': { volumes: [`${world.repo.bareDir}:/srv/git/site.git:ro`, `${selfRepo.bare}:/srv/git/deployer.git:ro`], deploy: { labels: label } },
          redis: { deploy: { labels: label } },
        },
        networks: { deployer: { labels: label } },
        volumes: Object.fromEntries(['deployer-data', 'worker-data', 'redis-data'].map((v) => [v, { labels: label }])),
      }),
    );
    // The previous release first: the restart below is the upgrade to this one.
    await cli(['stack', 'deploy', '--detach=true', '--resolve-image', 'never', '-c', 'stack.yml', '-c', 'test.yml', stack], {
      cwd: dir,
      env: { ...stackEnv, DEPLOYER_IMAGE: previousImage, STACK_NAME: stack },
    });
    phase('stack deployed (previous release)');
    // The compose project starts meanwhile; its own test waits for it (below).
    composeStarted = Date.now();
    composeUp = startCompose();
    composeUp.catch(() => undefined); // reported by the compose test
  }, 120_000);

  it('the previous release becomes healthy and deploys a signed push (history to keep)', async () => {
    const ms = await waitHealthy(webContainer, 180_000);
    console.log(`stack web (previous release) healthy ${ms} ms after deploy`);
    const info = await docker.getContainer(await webContainer()).inspect();
    expect(info.Config.Labels['org.opencontainers.image.revision']).toBe(PREVIOUS);
    const sha = await commit('deployed by the previous release\n', 'previous');
    const runs = await push(sha);
    expect(runs).toHaveLength(1);
    const run = await waitFinished(runs![0]!, 180_000);
    expect(run, JSON.stringify(run)).toMatchObject({ status: 'succeeded', commit: sha });
    history = { run: runs![0]!, sha, migrations: await migrations() };
    // The previous release had no migration 005: the upgrade has one to run.
    expect(history.migrations.map((m) => m.version)).not.toContain(5);
  });

  it('docker service update --force --image NEW of web and worker-manager (an upgrade, a restart) loses no accepted push; migrations run once; history intact', async () => {
    const accepted: { run: string; sha: string; content: string; when: string }[] = [];
    let when = 'before';
    let stop = false;
    let n = 0;
    const pusher = (async () => {
      while (!stop) {
        const content = `push ${++n}\n`;
        const sha = await commit(content, `push ${n}`);
        const runs = await push(sha);
        if (runs) accepted.push({ run: runs[0]!, sha, content, when });
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const waitAccepted = async (count: number, p: string) => {
      const deadline = Date.now() + 60_000;
      while (accepted.filter((a) => a.when === p).length < count) {
        if (Date.now() > deadline) throw new Error(`fewer than ${count} pushes accepted ${p} the restart`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await waitAccepted(3, 'before');
      // Restart while a run is in flight: the worker must park it (or finish its deploy).
      for (const until = Date.now() + 60_000; ; ) {
        const statuses = await Promise.all(accepted.map((a) => runOf(a.run).then((r) => r.status, () => undefined)));
        if (statuses.includes('running')) break;
        if (Date.now() > until) throw new Error(`no run in flight to restart under: ${statuses.join(', ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      phase('restarting web and worker');
      when = 'during';
      // Both restarted at once: the web side (store owner) and the worker running the runs.
      // Done when each runs a new container (web: healthy) and the old ones are gone; the
      // CLI's --detach=false would also sit out the monitor period.
      const before = await Promise.all(['web', 'worker-manager'].map(async (s) => (await runningTasks(`${stack}_${s}`)).map((t) => t.Status.ContainerStatus?.ContainerID)));
      // The previous release takes no store lease: from it, web is updated stop-first once
      // (as the README says), so two store owners never apply events at once.
      await Promise.all(['web', 'worker-manager'].map((s) => cli(['service', 'update', '--force', '--image', image, ...(s === 'web' ? ['--update-order', 'stop-first'] : []), '--detach', '--quiet', `${stack}_${s}`])));
      const replaced = async (s: string, old: (string | undefined)[]) => {
        const ids = (await runningTasks(`${stack}_${s}`)).map((t) => t.Status.ContainerStatus?.ContainerID);
        const fresh = ids.filter((id) => id && !old.includes(id));
        return fresh.length > 0 && fresh.length === ids.length ? fresh[0]! : undefined;
      };
      await waitHealthy(async () => (await replaced('web', before[0]!)) ?? Promise.reject(new Error('web not replaced yet')), 180_000);
      for (const until = Date.now() + 180_000; !(await replaced('worker-manager', before[1]!)); ) {
        if (Date.now() > until) throw new Error('worker not replaced within 180 s');
        await new Promise((r) => setTimeout(r, 250));
      }
      when = 'after';
      phase('restarted');
      // SIGTERM reached both (tini forwards it) and each shut down cleanly, not killed
      // at the end of its grace period.
      for (const id of before.flat()) {
        const state = (await docker.getContainer(id!).inspect()).State;
        expect({ id, exit: state.ExitCode, oomKilled: state.OOMKilled }).toEqual({ id, exit: 0, oomKilled: false });
      }
      await waitAccepted(2, 'after');
      phase('pushes accepted after the restart');
    } finally {
      stop = true;
      await pusher;
    }
    const results = await Promise.all(accepted.map(async (a) => ({ ...a, ...(await waitFinished(a.run, 240_000)) })));
    phase('every accepted push has finished');
    console.log(`pushes: ${n} sent, ${accepted.length} accepted (${['before', 'during', 'after'].map((p) => `${accepted.filter((a) => a.when === p).length} ${p}`).join(', ')})`);
    for (const r of results) expect(['succeeded', 'superseded'], JSON.stringify(r)).toContain(r.status);
    const last = results.at(-1)!;
    expect(last.status).toBe('succeeded');
    await waitForContent(world.services[0]!, last.content, 30_000);

    // The new version serves, on the same store: the previous release's run is there as
    // it was, each migration the previous release applied untouched, the new ones once.
    const info = await docker.getContainer(await webContainer()).inspect();
    expect(info.Config.Labels['org.opencontainers.image.revision']).toBe((await exec('git', ['rev-parse', 'HEAD'], { cwd: root })).stdout.trim());
    expect(await runOf(history.run)).toMatchObject({ status: 'succeeded', commit: history.sha });
    const after = await migrations();
    const shipped = readdirSync(join(root, 'migrations')).map((f) => Number(/^(\d+)_/.exec(f)?.[1])).filter((n) => n > 0).sort((x, y) => x - y);
    expect(after.map((m) => m.version)).toEqual(shipped);
    for (const m of history.migrations) expect(after).toContainEqual(m);
  }, 480_000);

  it('the upgraded deployer is healthy; check-config works inside it (non-root, read-only, tini as PID 1, the socket through its group)', async () => {
    await waitHealthy(webContainer, 120_000);
    const health = await fetch(`${await webUrl()}/healthz`);
    expect(health.status).toBe(200);
    const c = await webContainer();
    const info = await docker.getContainer(c).inspect();
    expect(info.Config.User).toBe(`${UID}:${dockerGid()}`);
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect((await cli(['exec', c, 'cat', '/proc/1/comm'])).trim()).toBe('tini');
    const out = await cli(['exec', c, 'deployer', 'check-config', '--config', '/etc/deployer/deployer.yaml']);
    expect(out).toContain('is valid');
    expect(out).toContain(`demo: ${REPO}@main`);
    // It inspected the demo service through the socket: no "could not inspect"/"does not exist".
    expect(out).not.toMatch(/could not inspect|does not exist/);
    // Secrets as files only the deployer's uid reads; the store on a named volume.
    const secrets = await cli(['exec', c, 'stat', '-c', '%n %u %a', '/run/secrets/github_webhook_secret', '/run/secrets/deployer_admin_token', '/run/secrets/registry_password']);
    for (const line of secrets.trim().split('\n')) expect(line).toMatch(/ 10001 400$/);
    expect(info.Mounts.find((m) => m.Destination === '/var/lib/deployer')).toMatchObject({ Type: 'volume', Name: `${stack}_deployer-data` });
    // Redis as BullMQ needs it: AOF on, nothing evicted.
    const redis = (await runningTasks(`${stack}_redis`))[0]?.Status.ContainerStatus?.ContainerID;
    const redisConfig = await cli(['exec', redis!, 'redis-cli', 'config', 'get', '*']);
    expect(redisConfig).toMatch(/appendonly\nyes/);
    expect(redisConfig).toMatch(/maxmemory-policy\nnoeviction/);
    // The build worker joined (web runs no worker: the end-to-end deploy below proves it works).
    expect(await runningTasks(`${stack}_worker-manager`)).toHaveLength(1);
  });

  it('a signed push deploys the demo service end to end', async () => {
    const sha = await commit('deployed by the new version\n', 'new');
    const runs = await push(sha);
    expect(runs).toHaveLength(1);
    const run = await waitFinished(runs![0]!, 180_000);
    expect(run, JSON.stringify(run)).toMatchObject({ status: 'succeeded', commit: sha });
    await waitForContent(world.services[0]!, 'deployed by the new version\n', 30_000);

    // The README's backup, as written: a consistent copy of the running store, out of the volume.
    const c = await webContainer();
    await cli(['exec', c, 'node', '-e', `new (require('node:sqlite').DatabaseSync)('/var/lib/deployer/deployer.db').exec("VACUUM INTO '/var/lib/deployer/backup.db'")`]);
    await cli(['cp', `${c}:/var/lib/deployer/backup.db`, join(work, 'backup.db')]);
    const backup = new DatabaseSync(join(work, 'backup.db'), { readOnly: true });
    expect({ ...backup.prepare('SELECT status FROM runs WHERE id = ?').get(runs![0]!) }).toEqual({ status: 'succeeded' });
    backup.close();
  });


  describe('it deploys itself (a pipeline whose services are its own web and worker-manager)', () => {
    /** Signed demo pushes every 300 ms until stopped: what was accepted, to check none is lost. */
    function pushThroughout(): { accepted: { run: string; sha: string; content: string }[]; stop(): Promise<number> } {
      const accepted: { run: string; sha: string; content: string }[] = [];
      let stopped = false;
      let n = 0;
      const loop = (async () => {
        while (!stopped) {
          const content = `self-deploy push ${++n}\n`;
          const sha = await commit(content, `push ${n}`);
          const runs = await push(sha);
          if (runs) accepted.push({ run: runs[0]!, sha, content });
          await new Promise((r) => setTimeout(r, 300));
        }
      })();
      return { accepted, stop: async () => ((stopped = true), await loop, n) };
    }

    /** Every accepted push finished (none lost, none stuck), the newest deployed. */
    async function noPushLost(p: ReturnType<typeof pushThroughout>): Promise<void> {
      const sent = await p.stop();
      const results = await Promise.all(p.accepted.map(async (a) => ({ ...a, ...(await waitFinished(a.run, 240_000)) })));
      console.log(`demo pushes during the self-deploy: ${sent} sent, ${p.accepted.length} accepted`);
      // The listener is never down: every push sent during the update was accepted.
      expect(p.accepted.length).toBeGreaterThan(0);
      expect(p.accepted.length).toBe(sent);
      for (const r of results) expect(['succeeded', 'superseded'], JSON.stringify(r)).toContain(r.status);
      expect(results.at(-1)!.status).toBe('succeeded');
      await waitForContent(world.services[0]!, results.at(-1)!.content, 30_000);
    }

    async function selfCommit(message: string, files: Record<string, string> = {}): Promise<string> {
      await writeFiles(selfRepo.dir, files);
      await git(['add', '--all'], selfRepo.dir);
      await git(['commit', '--quiet', '--allow-empty', '--no-verify', '-m', message], selfRepo.dir);
      await exec('git', ['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], { cwd: selfRepo.dir, env: { ...gitEnv(), GIT_CONFIG_GLOBAL: join(work, 'gitconfig') } });
      return (await git(['rev-parse', 'HEAD'], selfRepo.dir)).trim();
    }

    const health = async () => (await (await fetch(`${await webUrl()}/healthz`, { signal: AbortSignal.timeout(10_000) })).json()) as { status: string; store?: string; revision?: string };
    const containers = async (s: string) => (await runningTasks(`${stack}_${s}`)).map((t) => t.Status.ContainerStatus?.ContainerID).filter((id): id is string => Boolean(id));
    /** Runs of any pipeline still queued or running. */
    const openRuns = async () => {
      const open: string[] = [];
      for (const status of ['queued', 'running']) {
        const res = await fetch(`${await webUrl()}/api/runs?status=${status}`, AUTH);
        open.push(...((await res.json()) as { runs: { id: string }[] }).runs.map((r) => `${r.id} ${status}`));
      }
      return open;
    };
    const imageOf = async (id: string) => (await docker.getContainer(id).inspect()).Config.Image;
    let good: string;

    it('a good new version: built and pushed by the running deployer, web and worker-manager updated start-first, the new worker takes the run over and records it succeeded', async () => {
      const before = { web: await containers('web'), wm: await containers('worker-manager') };
      const pushes = pushThroughout();
      let run: Awaited<ReturnType<typeof waitFinished>> & { id?: string };
      try {
        good = await selfCommit('self-deploy: a good version');
        const runs = await push(good, SELF_REPO);
        expect(runs).toHaveLength(1);
        phase('self-deploy pushed');
        run = { ...(await waitFinished(runs![0]!, 480_000)), id: runs![0]! };
        phase(`self-deploy ${run.status}`);
      } finally {
        await noPushLost(pushes);
      }
      expect(run, JSON.stringify(run)).toMatchObject({ status: 'succeeded', commit: good });
      const detail = (await (await fetch(`${await webUrl()}/api/runs/${run.id}`, AUTH)).json()) as { image: { digest: string } };
      // The new version answers: its /healthz says the commit, and it owns the store.
      expect(await health()).toMatchObject({ status: 'ok', store: 'owner', revision: good });
      for (const s of ['web', 'worker-manager'] as const) {
        const now = await containers(s);
        expect(now).toHaveLength(1);
        expect(before[s === 'web' ? 'web' : 'wm']).not.toContain(now[0]);
        expect(await imageOf(now[0]!)).toBe(`${selfImage()}:live@${detail.image.digest}`);
      }
      // The old tasks stopped cleanly (SIGTERM, not killed at the end of their grace period).
      for (const id of [...before.web, ...before.wm]) expect({ id, exit: (await docker.getContainer(id).inspect()).State.ExitCode }).toEqual({ id, exit: 0 });
      const log = await (await fetch(`${await webUrl()}/api/runs/${run.id}/log`, AUTH)).text();
      expect(log).toContain(`${stack}_worker-manager is the deployer's own service`);
      expect(log).toMatch(/deploy handed off: this worker .* is stopping while it deploys the deployer's own service/);
      expect(log).toMatch(/this deployer is task \w+ of .*_worker-manager, running sha256:[0-9a-f]{64}: the new version took over/);
      // No run left running or queued, of either pipeline.
      expect(await openRuns()).toEqual([]);
    }, 720_000);

    it('a version whose health check fails: swarm rolls web back, the old version records rolled_back and still serves', async () => {
      const before = { web: await containers('web'), wm: await containers('worker-manager') };
      const dockerfile = (await exec('cat', [join(selfRepo.dir, 'Dockerfile')])).stdout;
      const broken = dockerfile.replace(/^HEALTHCHECK [^\n]*\\\n[^\n]*\n/m, 'HEALTHCHECK --interval=1s --timeout=2s --start-period=0s --retries=1 CMD ["false"]\n');
      expect(broken).not.toBe(dockerfile);
      const pushes = pushThroughout();
      let run: Awaited<ReturnType<typeof waitFinished>>;
      try {
        const bad = await selfCommit('self-deploy: a version that never becomes healthy', { Dockerfile: broken });
        const runs = await push(bad, SELF_REPO);
        expect(runs).toHaveLength(1);
        run = await waitFinished(runs![0]!, 480_000);
        phase(`bad self-deploy ${run.status}`);
        expect(run.commit).toBe(bad);
      } finally {
        await noPushLost(pushes);
      }
      expect(run, JSON.stringify(run)).toMatchObject({ status: 'rolled_back' });
      expect(run.error).toMatch(new RegExp(`${stack}_web rolled back`));
      // The old version still serves, from the same tasks.
      expect(await health()).toMatchObject({ status: 'ok', store: 'owner', revision: good });
      expect(await containers('web')).toEqual(before.web);
      expect(await containers('worker-manager')).toEqual(before.wm);
      expect(await openRuns()).toEqual([]);
    }, 720_000);
  });

});

const composeDir = join(work, 'compose');
const composePort = 20_000 + Math.floor(Math.random() * 20_000);
/** `docker compose` on the shipped docker-compose.yml, in a project directory holding the test's deploy/. */
function compose(args: string[]): Promise<string> {
  return cli(['compose', '-p', project, '--project-directory', composeDir, '-f', join(root, 'docker-compose.yml'), '-f', join(composeDir, 'test.yml'), ...args], {
    env: { ...stackEnv, DEPLOYER_PORT: String(composePort) },
  });
}

let composeStarted = 0;
let composeUp: Promise<string> | undefined;
function startCompose(): Promise<string> {
  writeDeployDir(join(composeDir, 'deploy'), world, world.services[0]!);
  const label = { 'deployer.test': '1' };
  writeFileSync(
    join(composeDir, 'test.yml'),
    JSON.stringify({ services: { deployer: { labels: label }, redis: { labels: label } }, volumes: { 'deployer-data': { labels: label }, 'redis-data': { labels: label } } }),
  );
  return compose(['up', '--detach', '--no-build', '--wait', '--wait-timeout', '180']);
}

describe('docker compose up (docker-compose.yml)', () => {
  it('starts a deployer that becomes healthy, with Redis, secrets as files and the data on a volume', async () => {
    // Started next to the stack (to overlap the waiting); alone, here.
    composeStarted ||= Date.now();
    await (composeUp ??= startCompose());
    console.log(`compose healthy ${Date.now() - composeStarted} ms after up`);
    const health = await fetch(`http://127.0.0.1:${composePort}/healthz`);
    expect(health.status).toBe(200);
    const id = (await compose(['ps', '-q', 'deployer'])).trim();
    const info = await docker.getContainer(id).inspect();
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.Mounts.find((m) => m.Destination === '/var/lib/deployer')?.Type).toBe('volume');
    const redisId = (await compose(['ps', '-q', 'redis'])).trim();
    const redisConfig = await cli(['exec', redisId, 'redis-cli', 'config', 'get', '*'], {});
    expect(redisConfig).toMatch(/appendonly\nyes/);
    expect(redisConfig).toMatch(/maxmemory-policy\nnoeviction/);
  });
});
