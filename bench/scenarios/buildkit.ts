// Scenario 8: what BuildKit buys. (1) A multi-stage build with two independent slow
// stages and an unused one: the deployer's builder with BuildKit (A = classic builder,
// the baseline) — BuildKit runs the two stages in parallel and skips the unused one.
// (2) A rebuild on a build host that has neither the image nor its build cache (a new
// worker, or one after pruning): with the pipeline's previous image as cache (inline
// cache, imported from the registry) against a cold build of the same Dockerfile.
// Both measured through DockerBuilder, the adapter the runner uses, in the same run.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerBuilder } from '../../src/docker/build.ts';
import { createDocker } from '../../src/docker/client.ts';
import { DockerPusher } from '../../src/docker/push.ts';
import { Secret } from '../../src/lib/secret.ts';
import { forgetBuildCache, removeRepositoryImages } from '../../test/support/build-cache.ts';
import { startRegistry, type TestRegistry } from '../../test/support/registry.ts';
import { copyBusybox, writeFiles } from '../../test/support/site.ts';
import { cleanupAll } from '../lib/cleanup.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { interleave, median, ratio } from '../lib/stats.ts';

export const buildkitScenario: Scenario = {
  name: 'buildkit',
  title: 'BuildKit: parallel multi-stage build vs the classic builder; rebuild on a fresh host with cache from the registry vs cold',
  run: runScenario,
};

const BUSYBOX = ['COPY busybox /bin/busybox', 'RUN ["/bin/busybox","--install","-s","/bin"]'];

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const size = ctx.quick ? { sleep: 0.3, pairs: 1 } : { sleep: 3, pairs: ctx.pairs ?? (ctx.full ? 7 : 3) };
  const docker = createDocker(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
  const tmp = await mkdtemp(join(tmpdir(), 'bench-buildkit-'));
  const tag = `bench-buildkit-${randomBytes(4).toString('hex')}`;
  const markers: string[] = [];
  let registry: TestRegistry | undefined;
  let image = '';
  try {
    registry = await startRegistry({ auth: true });
    image = `${registry.host}/bench-buildkit`;
    const registries = [{ host: registry.host, username: registry.username, password: new Secret(registry.password) }];
    const builder = new DockerBuilder(docker, registries);
    await copyBusybox(tmp);

    /** Builds the Dockerfile text; returns the wall time (ms) and the log. */
    const build = async (dockerfile: string, req: { builder: 'buildkit' | 'classic'; tags: string[]; cacheFrom?: string[]; args?: Record<string, string> }) => {
      await writeFiles(tmp, { Dockerfile: dockerfile });
      const lines: string[] = [];
      const t0 = performance.now();
      await builder.build({
        contextDir: tmp, files: ['busybox', 'Dockerfile'], dockerfile: 'Dockerfile', args: req.args ?? {}, target: undefined,
        labels: { 'deployer.test': '1' }, tags: req.tags, signal: AbortSignal.timeout(300_000), log: (l) => lines.push(l),
        builder: req.builder, cacheFrom: req.cacheFrom ?? [],
      });
      return { ms: performance.now() - t0, lines };
    };

    // (1) Parallel stages. A fresh marker per build: no step of the slow stages is cached.
    const parallel = (marker: string) =>
      [
        'FROM scratch AS base', ...BUSYBOX,
        'FROM base AS docs', `RUN sleep ${size.sleep} && echo "docs ${marker}" > /docs`,
        'FROM base AS assets', `RUN sleep ${size.sleep} && echo "assets ${marker}" > /assets`,
        'FROM base AS unused', `RUN sleep ${size.sleep} && echo "unused ${marker}" > /unused`,
        'FROM base', 'COPY --from=docs /docs /docs', 'COPY --from=assets /assets /assets', '',
      ].join('\n');
    const fresh = () => {
      const m = `bench-${randomBytes(6).toString('hex')}`;
      markers.push(m);
      return m;
    };
    const par = await interleave({
      pairs: size.pairs,
      warmup: ctx.quick ? 0 : 1,
      deadline: ctx.deadline,
      a: async () => {
        const m = fresh();
        return (await build(parallel(m), { builder: 'classic', tags: [`${tag}:${m}`] })).ms;
      },
      b: async () => {
        const m = fresh();
        return (await build(parallel(m), { builder: 'buildkit', tags: [`${tag}:${m}`] })).ms;
      },
      onRound: (i, a, b) => ctx.log(`parallel build ${i + 1}/${size.pairs}: classic ${(a / 1000).toFixed(2)} s, BuildKit ${(b / 1000).toFixed(2)} s`),
    });

    // (2) A fresh host. Each round: a cold build (pushed as :live), then the host forgets
    // the image and the cache of its steps, then a rebuild of the next commit.
    const app = (marker: string) =>
      [
        'FROM scratch AS deps', ...BUSYBOX,
        `RUN sleep ${size.sleep} && echo "dependencies ${marker}" > /deps`,
        'FROM scratch AS tools', ...BUSYBOX,
        `RUN sleep ${size.sleep} && mkdir /out && echo "generated ${marker}" > /out/site`,
        'FROM deps',
        'COPY --from=tools /out /www',
        'ARG SOURCE_COMMIT',
        'RUN echo "$SOURCE_COMMIT" > /www/revision',
        '',
      ].join('\n');
    const pusher = new DockerPusher(docker, registries);
    const cold: number[] = [];
    const warm: number[] = [];
    const cached: boolean[] = [];
    const rounds = ctx.quick ? 1 : size.pairs;
    for (let i = 0; i < rounds && (i === 0 || Date.now() < ctx.deadline); i++) {
      const marker = fresh();
      const first = await build(app(marker), { builder: 'buildkit', tags: [`${image}:live`], cacheFrom: [`${image}:live`], args: { SOURCE_COMMIT: `${marker}-1` } });
      await pusher.push({ repository: image, registry: registry.host, tag: 'live', signal: AbortSignal.timeout(120_000), log: () => undefined });
      await removeRepositoryImages(image);
      await forgetBuildCache(marker);
      const second = await build(app(marker), { builder: 'buildkit', tags: [`${image}:next`], cacheFrom: [`${image}:live`], args: { SOURCE_COMMIT: `${marker}-2` } });
      // Both slow steps must have come from the registry's cache, or the figure means nothing.
      const slowSteps = second.lines.filter((l) => l.includes(`sleep ${size.sleep}`) && / \[(deps|tools) /.test(l)).map((l) => l.split(' ')[0]!);
      const allCached = slowSteps.length === 2 && slowSteps.every((n) => second.lines.includes(`${n} CACHED`));
      cold.push(first.ms);
      warm.push(second.ms);
      cached.push(allCached);
      ctx.log(`fresh host ${i + 1}/${rounds}: cold ${(first.ms / 1000).toFixed(2)} s, with cache from the registry ${(second.ms / 1000).toFixed(2)} s (slow steps cached: ${allCached})`);
      await removeRepositoryImages(image);
      await forgetBuildCache(marker);
    }

    const mA = median(par.a);
    const mB = median(par.b);
    const mCold = median(cold);
    const mWarm = median(warm);
    const rows: Row[] = [
      { metric: 'parallel multi-stage build (2 slow stages + 1 unused), median', unit: 'ms', baseline: mA, deployer: mB, ratio: ratio(mB, mA), goal: 'ratio ≤ 0.6 (BuildKit vs classic)', met: ctx.quick ? null : (ratio(mB, mA) ?? Infinity) <= 0.6 },
      { metric: 'rebuild on a fresh host: cache from the registry vs cold, median', unit: 'ms', baseline: mCold, deployer: mWarm, ratio: ratio(mWarm, mCold), goal: 'ratio ≤ 0.6', met: ctx.quick ? null : (ratio(mWarm, mCold) ?? Infinity) <= 0.6 },
      { metric: '  rounds whose slow steps all came from the registry cache', unit: '', baseline: null, deployer: cached.filter(Boolean).length, ratio: null, goal: `all ${cached.length}`, met: cached.every(Boolean) },
    ];
    const notes = [
      `Slow steps sleep ${size.sleep} s each; every build uses fresh step contents (nothing of them cached locally). ${par.a.length} measured pair(s)${ctx.quick ? '' : ', 1 warm-up pair not counted'}${par.truncated ? '; TRUNCATED by the time budget' : ''}.`,
      'Parallel: A = the classic builder (runs all three stages, one after another), B = BuildKit (runs the two needed stages at once, skips the unused one). Both through DockerBuilder, wall time of build().',
      'Fresh host: the cold build (cachefrom names an image not in the registry yet) is pushed as :live; then the image is removed and the build cache records of its steps are pruned (only ours, by id), and the next commit is built with cachefrom :live (inline cache metadata, BUILDKIT_INLINE_CACHE=1). It pulls the cached layers instead of running the steps; only the step using SOURCE_COMMIT runs.',
    ];
    return { params: { ...size, measuredPairs: par.a.length, freshHostRounds: cold.length }, rows, notes, samples: { classic: par.a, buildkit: par.b, cold, warm, cached } };
  } finally {
    const errors = await cleanupAll([
      () => removeRepositoryImages(tag),
      async () => image && removeRepositoryImages(image),
      async () => {
        for (const m of markers) await forgetBuildCache(m);
      },
      async () => registry?.stop(),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
