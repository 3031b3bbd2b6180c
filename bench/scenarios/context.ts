// Scenario 7: the build stage with a 500 MB / 20,000-file context: `docker build` of
// the directory by hand (A) against the deployer's build stage of the same commit (B),
// interleaved A/B/A/B. Both send the same files (a .dockerignore keeps .git out of the
// CLI's context; the deployer sends tracked files only) to the same classic builder.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baseEnv, run } from '../../test/support/exec.ts';
import { startRegistry, type TestRegistry } from '../../test/support/registry.ts';
import { createBigRepo, type BigRepo } from '../lib/big-repo.ts';
import { cleanupAll, clearRedis, removeDataDir, removeImages } from '../lib/cleanup.ts';
import { startDaemonProcess, type DaemonProcess } from '../lib/daemon-process.ts';
import { pushBody, signedHeaders } from '../lib/payload.ts';
import { MiB, resetPeak, readMemory, toMiB } from '../lib/proc.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { pushAndWait } from '../lib/runs.ts';
import { interleave, median, ratio } from '../lib/stats.ts';

export const contextScenario: Scenario = {
  name: 'context',
  title: 'Build context: docker build of a 500 MB / 20,000-file directory vs the deployer',
  run: runScenario,
};

interface DeployerBuild {
  build: number;
  fetch: number;
  run: number;
  peakRssGrowth: number;
}

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const base = ctx.quick ? { files: 100, bytes: 2 * MiB, pairs: 1, warmup: 0 } : { files: 20_000, bytes: 500 * MiB, pairs: ctx.full ? 9 : 5, warmup: 1 };
  const size = { ...base, pairs: ctx.pairs ?? base.pairs };
  const tmp = await mkdtemp(join(tmpdir(), 'bench-context-'));
  let registry: TestRegistry | undefined;
  let repo: BigRepo | undefined;
  let daemon: DaemonProcess | undefined;
  const image = { name: '' };
  try {
    registry = await startRegistry({ auth: true });
    image.name = `${registry.host}/bench-context`;
    ctx.log(`writing a ${toMiB(size.bytes).toFixed(0)} MiB context of ${size.files} files into a git repository`);
    repo = await createBigRepo(join(tmp, 'ctx'), { files: size.files, bytes: size.bytes, deadline: ctx.deadline });
    daemon = await startDaemonProcess({
      // The classic builder, as the baseline's `docker build` (DOCKER_BUILDKIT=0): like for like.
      pipelines: [{ name: 'ctx', repo: 'acme/ctx', url: repo.url, branch: 'main', image: image.name, tag: 'live', services: [], build: { builder: 'classic' } }],
      registry: { host: registry.host, username: registry.username, password: registry.password },
      http: true,
      worker: true,
      logFile: join(tmp, 'daemon.log'),
      ...(ctx.cpuProf ? { cpuProfDir: join(ctx.outDir, 'profiles'), profileName: 'context-daemon' } : {}),
    });
    const { url, secret, adminToken } = daemon.ready;
    const pid = daemon.pid;
    const theRepo = repo;
    const env = baseEnv({ DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false', DOCKER_CONFIG: join(tmp, 'docker-config') });

    const manual = async (round: number): Promise<number> => {
      const t0 = performance.now();
      await run(
        'docker',
        ['build', '--quiet', '-t', `${image.name}:${theRepo.commit}`, '-t', `${image.name}:manual-${round + 10}`, '--label', `org.opencontainers.image.revision=${theRepo.commit}`, '--label', 'org.opencontainers.image.source=https://github.com/acme/ctx', '--label', 'org.opencontainers.image.ref.name=main', '.'],
        { env, cwd: theRepo.dir, timeoutMs: 600_000 },
      );
      return performance.now() - t0;
    };
    const deployer = async (round: number): Promise<DeployerBuild> => {
      const body = pushBody('acme/ctx', 'main', theRepo.commit);
      const before = readMemory(pid).rss;
      resetPeak(pid);
      const r = await pushAndWait(url, adminToken, body, { ...signedHeaders(body, secret), 'x-github-delivery': `bench-ctx-${round + 10}` }, 600_000, 100);
      const peak = readMemory(pid).hwm;
      if (r.status !== 'succeeded') throw new Error(`run ${r.id} ${r.status}: ${r.error}`);
      const d = (name: string) => {
        const s = r.stages.find((x) => x.name === name)!;
        return Date.parse(s.finishedAt!) - Date.parse(s.startedAt!);
      };
      return { build: d('build'), fetch: d('fetch'), run: Date.parse(r.finishedAt!) - Date.parse(r.startedAt!), peakRssGrowth: peak - before };
    };
    const { a, b, truncated } = await interleave({
      pairs: size.pairs,
      warmup: size.warmup,
      deadline: ctx.deadline,
      a: manual,
      b: deployer,
      onRound: (i, ra, rb) => ctx.log(`pair ${i + 1}/${size.pairs}: docker build ${(ra / 1000).toFixed(2)} s, deployer build stage ${(rb.build / 1000).toFixed(2)} s (fetch ${(rb.fetch / 1000).toFixed(2)} s)`),
    });
    const ma = median(a);
    const mb = median(b.map((x) => x.build));
    const rows: Row[] = [
      { metric: `build, ${toMiB(repo.bytes).toFixed(0)} MiB / ${repo.files} files (median)`, unit: 'ms', baseline: ma, deployer: mb, ratio: ratio(mb, ma), goal: 'ratio ≤ 1.10', met: (ratio(mb, ma) ?? Infinity) <= 1.1 },
      { metric: 'ratio per pair (median)', unit: '', baseline: null, deployer: null, ratio: median(a.map((x, i) => b[i]!.build / x)), goal: 'ratio ≤ 1.10', met: median(a.map((x, i) => b[i]!.build / x)) <= 1.1 },
      { metric: '  context throughput', unit: 'MiB/s', baseline: toMiB(repo.bytes) / (ma / 1000), deployer: toMiB(repo.bytes) / (mb / 1000), ratio: ratio(ma, mb), goal: '', met: null },
      { metric: '  deployer fetch stage (checkout), for scale', unit: 'ms', baseline: null, deployer: median(b.map((x) => x.fetch)), ratio: null, goal: '', met: null },
      { metric: '  deployer peak RSS growth during the run', unit: 'MiB', baseline: null, deployer: toMiB(median(b.map((x) => x.peakRssGrowth))), ratio: null, goal: '', met: null },
    ];
    const notes = [
      `${a.length} measured pairs, ${size.warmup} warm-up pair(s) not counted${truncated ? '; TRUNCATED by the time budget' : ''}. The same commit every time: the Dockerfile's one COPY step is cached after the first build, so both sides time the context transfer, the daemon unpacking it and the cache lookup.`,
      'A: wall time of `docker build --quiet` (classic builder, same labels, two tags) in the checked-out directory (a .dockerignore holds `.git`). B: the deployer\'s build stage, from its own stage timestamps (packing the tracked files, POST /build, following the output, tagging).',
      `Context: ${repo.files} files, ${toMiB(repo.bytes).toFixed(0)} MiB of incompressible data.`,
    ];
    return { params: { ...size, measuredPairs: a.length, truncated }, rows, notes, samples: { manual: a, deployer: b } };
  } finally {
    const ready = daemon?.ready;
    const errors = await cleanupAll([
      async () => daemon?.stop(),
      async () => ready && clearRedis(ready.redisUrl, ready.redisPrefix, ['ctx']),
      () => removeDataDir(ready?.dataDir),
      async () => registry?.stop(),
      async () => image.name && removeImages(image.name),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
