// Scenario 1: the same small site deployed to the same swarm service, (A) by hand with
// the docker CLI, (B) by the deployer from a signed push webhook, interleaved A/B/A/B.
//
// The deployer's own overhead is the time of B outside git and Docker: every git
// process is timed by a wrapper on PATH (git-timing.ts) and every Docker API call by a
// timing proxy on the Docker socket (docker-proxy.ts), which both sides go through.
// Waiting for swarm (from the update call until UpdateStatus.CompletedAt) counts as
// Docker time; what follows until the deployer notices is its convergence polling lag.
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { isTerminal, type RunStatus } from '../../src/pipeline/states.ts';
import type { RunView } from '../../src/store/run-store.ts';
import { testConfig } from '../../test/helpers/config.ts';
import { deliver, pushPayload } from '../../test/helpers/github.ts';
import { baseEnv, run } from '../../test/support/exec.ts';
import { startRegistry, type TestRegistry } from '../../test/support/registry.ts';
import { createSiteRepo, git, gitEnv, siteFiles, type SiteRepo } from '../../test/support/site.ts';
import { buildAndPushSeed, createTestNetwork, createTestService, removeTestResources, uniqueName } from '../../test/support/swarm.ts';
import { cleanupAll, clearRedis, removeDataDir, removeImages } from '../lib/cleanup.ts';
import { startDockerProxy, type DockerProxy } from '../lib/docker-proxy.ts';
import { installGitTiming, type GitTiming } from '../lib/git-timing.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { interleave, median, ratio, unionLength } from '../lib/stats.ts';

const REPO = 'acme/site';
const STAGES = ['fetch', 'build', 'push', 'deploy'] as const;
type Stage = (typeof STAGES)[number];
const now = () => performance.timeOrigin + performance.now();

interface Manual {
  commit: string;
  stages: Record<Stage, number>;
  total: number;
}

interface Deployed {
  commit: string;
  run: string;
  stages: Record<Stage, number>;
  total: number;
  /** Time outside git and Docker calls. */
  own: number;
  webhookToStart: number;
  pollingLag: number | null;
  finishLag: number;
  /** Docker calls after the deploy stage (the run's image pruning), ms of their union. */
  afterDeployDocker: number;
  insideCalls: number;
  dockerCalls: number;
  gitCalls: number;
  /** Own time (outside calls) inside each stage, and before/after the stages. */
  ownBy: Record<Stage | 'beforeStages' | 'afterStages' | 'betweenStages', number>;
  /** Every git and Docker call of the run, ms from the webhook (kept for the last pair). */
  trace?: { at: number; ms: number; what: string }[];
}

export const deployOverhead: Scenario = {
  name: 'deploy-overhead',
  title: 'Deploy overhead: docker CLI by hand vs a signed push through the deployer',
  run: runScenario,
};

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : ctx.full ? 15 : 7);
  const warmup = ctx.quick ? 0 : 1;
  const monitor = '2s';
  const tmp = await mkdtemp(join(tmpdir(), 'bench-deploy-'));
  let timing: GitTiming | undefined;
  let proxy: DockerProxy | undefined;
  let registry: TestRegistry | undefined;
  let repo: SiteRepo | undefined;
  let daemon: Daemon | undefined;
  let config: Config | undefined;
  const network = uniqueName('bench-net');
  const service = uniqueName('bench-www');
  const imageName = uniqueName('bench-site');
  let image = '';
  try {
    timing = installGitTiming(tmp);
    proxy = await startDockerProxy(tmp);
    registry = await startRegistry({ auth: true });
    image = `${registry.host}/${imageName}`;
    repo = await createSiteRepo();
    ctx.log(`setting up service ${service} (monitor ${monitor}) and registry ${registry.host}`);
    await createTestNetwork(network);
    const seed = await buildAndPushSeed(registry, imageName, 'seed\n');
    await createTestService({ name: service, image: seed.ref, network, registry });

    // The hand-run side: a clone kept between runs and a docker CLI logged in once.
    const files = (content: string) => ({ ...siteFiles(content), '.dockerignore': '.git\n' });
    await repo.commit(files('initial\n'), 'initial');
    const clone = join(tmp, 'clone');
    await git(['clone', '--quiet', repo.url, clone], tmp);
    const dockerConfig = join(tmp, 'docker-config');
    await mkdir(dockerConfig);
    const cliEnv = baseEnv({ DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false', DOCKER_HOST: proxy.host });
    const docker = (args: string[], cwd?: string) => run('docker', args, { env: cliEnv, cwd, timeoutMs: 180_000 });
    await run('docker', ['login', '--username', registry.username, '--password-stdin', registry.host], { env: cliEnv, input: registry.password });

    config = testConfig({
      registry: { host: registry.host, username: registry.username, password: registry.password },
      dockerHost: proxy.host,
      // The classic builder, as the baseline's `docker build` (DOCKER_BUILDKIT=0): like for like.
      pipelines: [{ name: 'site', repo: REPO, url: repo.url, branch: 'main', image, tag: 'live', services: [service], deploy: { monitor, timeout: '90s' }, build: { builder: 'classic' } }],
    });
    // The deployer prunes its repository's old images after each run (after reporting
    // the outcome), and the CLI side tags into the same repository: a prune racing the
    // next CLI build deleted a cached layer under it ("unable to find image"). Pruning is
    // housekeeping outside the measured time, so it is kept out of the way here.
    config.pipelines[0]!.retention.images = 1000;
    // Production's default level, written to a file instead of stdout.
    const logger = createLogger('info', createWriteStream(join(tmp, 'daemon.log')));
    daemon = await startDaemon(config, { http: true, worker: true, port: 0, logger });
    const url = daemon.url!;
    const store = daemon.store!;
    const api = new Docker();
    const theRepo = repo;
    const theProxy = proxy;
    const theTiming = timing;

    const manual = async (round: number): Promise<Manual> => {
      const sha = await theRepo.commit(files(`manual ${round}\n`), `manual ${round}`);
      const t0 = now();
      await run('git', ['fetch', '--quiet', 'origin', sha], { env: gitEnv(), cwd: clone });
      await run('git', ['checkout', '--quiet', '--detach', sha], { env: gitEnv(), cwd: clone });
      const t1 = now();
      await docker(
        ['build', '--quiet', '-t', `${image}:${sha}`, '-t', `${image}:live`, '--label', `org.opencontainers.image.revision=${sha}`, '--label', `org.opencontainers.image.source=https://github.com/${REPO}`, '--label', 'org.opencontainers.image.ref.name=main', '.'],
        clone,
      );
      const t2 = now();
      await docker(['push', '--quiet', `${image}:${sha}`]);
      const out = await docker(['push', `${image}:live`]);
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1];
      if (!digest) throw new Error(`no digest in docker push output: ${out}`);
      const t3 = now();
      await docker(['service', 'update', '--detach=false', '--quiet', '--with-registry-auth', '--image', `${image}:live@${digest}`, service]);
      const t4 = now();
      return { commit: sha, stages: { fetch: t1 - t0, build: t2 - t1, push: t3 - t2, deploy: t4 - t3 }, total: t4 - t0 };
    };

    const deployed = async (round: number): Promise<Deployed> => {
      const sha = await theRepo.commit(files(`deployer ${round}\n`), `deployer ${round}`);
      const before = (await api.getService(service).inspect()) as { UpdateStatus?: { StartedAt?: string } };
      const t0 = now();
      const res = await deliver(url, pushPayload(REPO, 'main', sha, `deployer ${round}`));
      if (res.status !== 202 || !res.body?.runs?.[0]) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(res.body)}`);
      const runId = res.body.runs[0] as string;
      let view: RunView | undefined;
      const deadline = Date.now() + 150_000;
      // The store is in this process: a 5 ms poll adds at most 5 ms to what is measured.
      for (;;) {
        view = store.getRun(runId);
        if (view && isTerminal(view.status as RunStatus)) break;
        if (Date.now() > deadline) throw new Error(`run ${runId} not finished after 150 s: ${JSON.stringify(view)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      const tEnd = now();
      if (view.status !== 'succeeded') throw new Error(`run ${runId} ${view.status}: ${view.error}`);
      const svc = (await api.getService(service).inspect()) as {
        Spec: { TaskTemplate: { ContainerSpec: { Image: string } } };
        UpdateStatus?: { State?: string; StartedAt?: string; CompletedAt?: string };
      };
      if (svc.Spec.TaskTemplate.ContainerSpec.Image !== view.image?.ref) throw new Error(`service runs ${svc.Spec.TaskTemplate.ContainerSpec.Image}, run says ${view.image?.ref}`);

      const stage = (name: Stage) => view!.stages.find((s) => s.name === name)!;
      const t = (iso: string | null) => (iso ? Date.parse(iso) : Number.NaN);
      const stages = Object.fromEntries(STAGES.map((s) => [s, t(stage(s).finishedAt) - t(stage(s).startedAt)])) as Record<Stage, number>;
      const dockerCalls = (await theProxy.calls(t0)).filter((c) => c.start >= t0 - 1 && c.end <= tEnd + 1);
      const gitCalls = theTiming.calls(t0).filter((c) => c.start >= t0 - 1 && c.end <= tEnd + 1);
      const update = dockerCalls.filter((c) => c.method === 'POST' && /\/services\/[^/]+\/update$/.test(c.path)).at(-1);
      const deployEnd = t(stage('deploy').finishedAt);
      const fresh = svc.UpdateStatus?.State === 'completed' && svc.UpdateStatus.StartedAt !== before.UpdateStatus?.StartedAt;
      const completedAt = fresh && svc.UpdateStatus?.CompletedAt ? Date.parse(svc.UpdateStatus.CompletedAt) : Number.NaN;
      const converged = Number.isFinite(completedAt) && completedAt <= deployEnd ? completedAt : deployEnd;
      const calls = [...dockerCalls, ...gitCalls];
      const waiting = update ? [{ start: update.start, end: converged }] : [];
      const inside = unionLength([...calls, ...waiting], t0, converged) + unionLength(calls, deployEnd, tEnd);
      const total = tEnd - t0;
      const all = [...calls, ...waiting];
      const ownIn = (from: number, to: number) => Math.max(0, to - from - unionLength(all, from, to));
      const ownStages = Object.fromEntries(STAGES.map((s) => [s, ownIn(t(stage(s).startedAt), t(stage(s).finishedAt))])) as Record<Stage, number>;
      const beforeStages = ownIn(t0, t(stage('fetch').startedAt));
      const afterStages = total - inside - Object.values(ownStages).reduce((x, y) => x + y, 0) - beforeStages;
      const ownBy = { ...ownStages, beforeStages, afterStages: ownIn(deployEnd, tEnd), betweenStages: afterStages - ownIn(deployEnd, tEnd) };
      const trace = [
        ...dockerCalls.map((c) => ({ at: c.start - t0, ms: c.end - c.start, what: `docker ${c.method} ${c.path.replace(/^\/v[\d.]+/, '')}` })),
        ...gitCalls.map((c) => ({ at: c.start - t0, ms: c.end - c.start, what: `git ${c.command}` })),
        ...STAGES.flatMap((s) => [
          { at: t(stage(s).startedAt) - t0, ms: 0, what: `stage ${s} started` },
          { at: t(stage(s).finishedAt) - t0, ms: 0, what: `stage ${s} finished` },
        ]),
        { at: t(view.startedAt) - t0, ms: 0, what: 'run started' },
        ...(Number.isFinite(completedAt) ? [{ at: completedAt - t0, ms: 0, what: 'swarm UpdateStatus completed' }] : []),
        { at: tEnd - t0, ms: 0, what: 'run succeeded seen in the store' },
      ]
        .sort((x, y) => x.at - y.at)
        .map((x) => ({ at: Math.round(x.at * 10) / 10, ms: Math.round(x.ms * 10) / 10, what: x.what }));
      return {
        ownBy,
        trace,
        commit: sha,
        run: runId,
        stages,
        total,
        own: total - inside,
        webhookToStart: t(view.startedAt) - t0,
        pollingLag: Number.isFinite(completedAt) ? deployEnd - completedAt : null,
        finishLag: tEnd - deployEnd,
        afterDeployDocker: unionLength(dockerCalls, deployEnd, tEnd),
        insideCalls: inside,
        dockerCalls: dockerCalls.length,
        gitCalls: gitCalls.length,
      };
    };

    const { a, b, truncated } = await interleave({
      pairs,
      warmup,
      deadline: ctx.deadline,
      a: manual,
      b: deployed,
      onRound: (i, ra, rb) => ctx.log(`pair ${i + 1}/${pairs}: manual ${(ra.total / 1000).toFixed(2)} s, deployer ${(rb.total / 1000).toFixed(2)} s (own ${rb.own.toFixed(0)} ms)`),
    });

    const rows: Row[] = [];
    for (const s of STAGES) {
      const ma = median(a.map((x) => x.stages[s]));
      const mb = median(b.map((x) => x.stages[s]));
      rows.push({ metric: `${s} stage (median)`, unit: 'ms', baseline: ma, deployer: mb, ratio: ratio(mb, ma), goal: '', met: null });
    }
    const ta = median(a.map((x) => x.total));
    const tb = median(b.map((x) => x.total));
    const ratios = a.map((x, i) => b[i]!.total / x.total);
    rows.push({ metric: 'total, push → converged (median)', unit: 'ms', baseline: ta, deployer: tb, ratio: ratio(tb, ta), goal: 'ratio ≤ 1.05', met: (ratio(tb, ta) ?? Infinity) <= 1.05 });
    rows.push({ metric: 'ratio B/A per pair (median)', unit: '', baseline: null, deployer: null, ratio: median(ratios), goal: 'ratio ≤ 1.05', met: median(ratios) <= 1.05 });
    const own = median(b.map((x) => x.own));
    rows.push({ metric: "deployer's own overhead (median)", unit: 'ms', baseline: null, deployer: own, ratio: null, goal: '< 300 ms', met: own < 300 });
    const lags = b.map((x) => x.pollingLag).filter((x): x is number => x !== null);
    const webhook = median(b.map((x) => x.webhookToStart));
    const lag = lags.length ? median(lags) : null;
    rows.push({ metric: '  webhook → job start', unit: 'ms', baseline: null, deployer: webhook, ratio: null, goal: '', met: null });
    rows.push({ metric: '  convergence polling lag', unit: 'ms', baseline: null, deployer: lag, ratio: null, goal: '', met: null });
    rows.push({ metric: '  other bookkeeping (rest of own)', unit: 'ms', baseline: null, deployer: median(b.map((x) => x.own - x.webhookToStart - (x.pollingLag ?? 0))), ratio: null, goal: '', met: null });
    for (const k of ['beforeStages', ...STAGES, 'betweenStages', 'afterStages'] as const) {
      rows.push({ metric: `  own time ${k === 'beforeStages' ? 'before fetch' : k === 'afterStages' ? 'after deploy' : k === 'betweenStages' ? 'between stages' : `in ${k}`}`, unit: 'ms', baseline: null, deployer: median(b.map((x) => x.ownBy[k])), ratio: null, goal: '', met: null });
    }
    rows.push({ metric: 'time inside git + Docker (median)', unit: 'ms', baseline: null, deployer: median(b.map((x) => x.insideCalls)), ratio: null, goal: '', met: null });
    rows.push({ metric: 'deploy end → run succeeded seen', unit: 'ms', baseline: null, deployer: median(b.map((x) => x.finishLag)), ratio: null, goal: '', met: null });
    rows.push({ metric: '  of which Docker calls (image pruning)', unit: 'ms', baseline: null, deployer: median(b.map((x) => x.afterDeployDocker)), ratio: null, goal: '', met: null });

    const notes = [
      `${a.length} measured pairs (A = docker CLI by hand, B = deployer), ${warmup} warm-up pair(s) not counted${truncated ? '; TRUNCATED by the time budget' : ''}.`,
      `Same repository, same service (replicated 1, --init, start-first, rollback on failure, monitor ${monitor}); each side deploys a new commit every time.`,
      'A: git fetch <sha> + checkout --detach in a kept clone; docker build (classic builder, same labels and two tags); docker push of :<sha> and :live (as the deployer pushes both); docker service update --detach=false --with-registry-auth --image <image>:live@<digest>.',
      "B: a signed push webhook until the store says succeeded (polled in-process every 5 ms). Stage times are the deployer's own stage timestamps. After the deploy stage the deployer removes old local images of the pipeline (retention) before it reports the run finished: that is Docker time, in B's total but not in its own overhead.",
      "Own overhead = B total − time inside git processes, Docker API calls and swarm's rollout (update call → UpdateStatus.CompletedAt); it includes webhook → job start, bookkeeping between calls, the convergence polling lag (CompletedAt → deploy stage end) and the time until the store shows the run finished.",
      'Both sides reach Docker through the same timing proxy and git through the same timing wrapper, so instrumentation costs hit A and B alike.',
    ];
    return {
      params: { pairs: a.length, warmup, monitor, truncated },
      rows,
      notes,
      samples: { manual: a, deployer: b.map((x, i) => (i === b.length - 1 ? x : { ...x, trace: undefined })) },
    };
  } finally {
    const errors = await cleanupAll([
      async () => daemon?.close(),
      async () => config && clearRedis(config.redisUrl, config.redisPrefix, config.pipelines.map((p) => p.name)),
      () => removeDataDir(config?.dataDir),
      () => removeTestResources([service, network]),
      async () => registry?.stop(),
      async () => repo?.cleanup(),
      async () => proxy?.stop(),
      async () => timing?.uninstall(),
      async () => image && removeImages(image),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
