// Scenario 3: a burst of signed pushes for distinct commits to one pipeline, spread over
// 2 s (100 by default). Latest push wins: the first push's run builds, every push that
// arrives while it runs replaces the one waiting, and only the newest is built next.
// Measured: builds executed during the burst (goal ≤ 2), and the time from the last
// push to the last commit's run succeeding (its image then serves), versus one isolated
// deploy (push → succeeded) of the same site in the same run, interleaved A/B/A/B.
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import type { Config } from '../../src/config/types.ts';
import { testConfig } from '../../test/helpers/config.ts';
import { deliver, pushPayload } from '../../test/helpers/github.ts';
import { waitForRun } from '../../test/helpers/runs.ts';
import { createWorld, disposeQueues, type World } from '../../test/helpers/world.ts';
import { siteFiles } from '../../test/support/site.ts';
import { serviceImage } from '../../test/support/swarm.ts';
import { cleanupAll, removeImages } from '../lib/cleanup.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { median, ratio } from '../lib/stats.ts';

const REPO = 'acme/burst';
const now = () => performance.timeOrigin + performance.now();

export const burst: Scenario = {
  name: 'burst',
  title: 'Burst of pushes to one pipeline (latest push wins) vs one isolated deploy',
  run: runScenario,
};

interface BurstSample {
  pushes: number;
  spreadMs: number;
  buildsExecuted: number;
  superseded: number;
  lastPushToServingMs: number;
}

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const pushes = ctx.quick ? 10 : 100;
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : ctx.full ? 5 : 3);
  const spreadMs = 2000;
  let world: World | undefined;
  let daemon: Daemon | undefined;
  let config: Config | undefined;
  const isolated: number[] = [];
  const bursts: BurstSample[] = [];
  try {
    world = await createWorld({ name: 'bench-burst', services: ['bench-burst-www'] });
    const w = world;
    const service = w.services[0]!;
    config = testConfig({
      registry: w.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: w.repo.url, image: w.image, tag: 'live', services: [service], deploy: { monitor: '2s', timeout: '2m' } }],
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    const url = daemon.url!;
    let n = 0;

    const isolatedDeploy = async () => {
      const sha = await w.repo.commit(siteFiles(`isolated ${n++}\n`), 'isolated');
      const t0 = now();
      const res = await deliver(url, pushPayload(REPO, 'main', sha));
      const run = await waitForRun(url, res.body.runs[0], 300_000);
      if (run.status !== 'succeeded') throw new Error(`isolated deploy ${run.status}: ${run.error}`);
      return now() - t0;
    };

    const burstDeploy = async (): Promise<BurstSample> => {
      // Commits first, so the burst itself is only webhooks.
      const shas: string[] = [];
      for (let i = 0; i < pushes; i++) shas.push(await w.repo.commit(siteFiles(`burst ${n} push ${i}\n`), `burst ${i}`));
      n++;
      const ids: string[] = [];
      const t0 = now();
      for (let i = 0; i < pushes; i++) {
        const due = t0 + (spreadMs * i) / Math.max(1, pushes - 1);
        const wait = due - now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const res = await deliver(url, pushPayload(REPO, 'main', shas[i]!));
        if (res.status !== 202) throw new Error(`push ${i} answered ${res.status}`);
        ids.push(res.body.runs[0]);
      }
      const tLast = now();
      const last = await waitForRun(url, ids[ids.length - 1]!, 300_000);
      const took = now() - tLast;
      if (last.status !== 'succeeded') throw new Error(`last run of the burst ${last.status}: ${last.error}`);
      if ((await serviceImage(service)) !== last.image.ref) throw new Error('the service does not run the last commit');
      const runs = await Promise.all(ids.map((id) => waitForRun(url, id, 300_000)));
      const built = runs.filter((r) => r.stages.find((s: { name: string; status: string }) => s.name === 'build').status !== 'pending' && r.stages.find((s: { name: string; status: string }) => s.name === 'build').status !== 'skipped').length;
      return { pushes, spreadMs: Math.round(tLast - t0), buildsExecuted: built, superseded: runs.filter((r) => r.status === 'superseded').length, lastPushToServingMs: took };
    };

    await isolatedDeploy(); // warm-up: mirror clone, layer cache, first rollout
    for (let i = 0; i < pairs && now() < ctx.deadline; i++) {
      isolated.push(await isolatedDeploy());
      const b = await burstDeploy();
      bursts.push(b);
      ctx.log(`pair ${i + 1}: isolated ${isolated[isolated.length - 1]!.toFixed(0)} ms; burst of ${b.pushes} in ${b.spreadMs} ms → ${b.buildsExecuted} builds, ${b.superseded} superseded, last push → serving ${b.lastPushToServingMs.toFixed(0)} ms`);
    }
  } finally {
    const failures = await cleanupAll([
      async () => daemon?.close(),
      async () => (config ? disposeQueues(config) : undefined),
      async () => (world ? removeImages(world.image) : undefined),
      async () => world?.dispose(),
    ]);
    for (const f of failures) ctx.log(`cleanup: ${f}`);
  }
  const iso = median(isolated);
  const toServing = median(bursts.map((b) => b.lastPushToServingMs));
  const maxBuilds = Math.max(...bursts.map((b) => b.buildsExecuted));
  const rows: Row[] = [
    { metric: `builds executed per burst of ${pushes} pushes (max)`, unit: '', baseline: 1, deployer: maxBuilds, ratio: null, goal: '≤ 2', met: maxBuilds <= 2 },
    { metric: 'runs superseded per burst (median)', unit: '', baseline: null, deployer: median(bursts.map((b) => b.superseded)), ratio: null, goal: '', met: null },
    { metric: 'burst spread, first → last push (median)', unit: 'ms', baseline: null, deployer: median(bursts.map((b) => b.spreadMs)), ratio: null, goal: '≤ 2000 + one round trip', met: null },
    { metric: 'last push → last commit serving (median)', unit: 'ms', baseline: iso, deployer: toServing, ratio: ratio(toServing, iso), goal: '', met: null },
  ];
  return {
    params: { pushes, pairs: bursts.length, spreadMs },
    rows,
    notes: [
      `Baseline: one isolated deploy of the same site (push → run succeeded), measured between bursts. A burst: ${pushes} commits made first, then their signed pushes sent over ${spreadMs} ms over real HTTP.`,
      'Builds executed = runs of the burst whose build stage started (the first push, then the newest waiting one); the rest end superseded without starting.',
      'last push → serving: the last push is answered, then its run is built, pushed and deployed after the run that was active finishes; the service image is checked to be that run\'s digest. Ratio about 1–2 is expected: the newest commit waits for at most one build in progress.',
    ],
    samples: { isolated, bursts },
  };
}
