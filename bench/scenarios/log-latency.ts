// Scenario 5: a build step prints a line every 10 ms, each stamped (microseconds) by
// the container as it leaves. Measured: the delay until the line arrives (B) at an SSE
// client of the deployer (GET /api/runs/:id/events), the whole way
// engine → worker → Redis stream → store → live view → HTTP, versus (A) the same
// build's lines arriving at `docker build` (the engine's own streaming: the floor any
// tool that shows build output sits on). Interleaved A/B/A/B, same context, cache
// busted each time so the step really runs.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSse } from '../../src/lib/sse.ts';
import { deliver, pushPayload } from '../../test/helpers/github.ts';
import { baseEnv } from '../../test/support/exec.ts';
import { startRegistry, type TestRegistry } from '../../test/support/registry.ts';
import { copyBusybox, createSiteRepo, git, writeFiles, type FileMap, type SiteRepo } from '../../test/support/site.ts';
import { uniqueName } from '../../test/support/swarm.ts';
import { cleanupAll, clearRedis, removeDataDir, removeImages } from '../lib/cleanup.ts';
import { startDaemonProcess, type DaemonProcess } from '../lib/daemon-process.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { interleave, median, p50, p99 } from '../lib/stats.ts';

const REPO = 'acme/loglat';
/** Sub-millisecond wall clock (the stamps are µs; Date.now() would round to ms). */
const now = () => performance.timeOrigin + performance.now();
/** What `ts '%.s'` makes of "tick N": "<epoch seconds>.<µs> tick N". */
const TICK = /(\d{10}\.\d{6}) tick (\d+)/;

export const logLatency: Scenario = {
  name: 'log-latency',
  title: 'Log line latency: build step → SSE client, vs build step → docker build',
  run: runScenario,
};

interface Round {
  /** Per line: arrival − stamp, ms. */
  delays: number[];
  emitted: number;
  received: number;
  /** SSE log events (B) or output reads (A) the lines came in. */
  batches: number;
}

function files(lines: number, round: string): FileMap {
  return {
    Dockerfile: [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox","--install","-s","/bin"]',
      'COPY round.txt /round.txt',
      // One `ts` per line: it stamps the line as it leaves (µs) and exits, so nothing
      // sits in a stdio buffer inside the container.
      `RUN i=0; while [ $i -lt ${lines} ]; do i=$((i+1)); echo "tick $i" | ts '%.s' ; usleep 10000; done`,
      '',
    ].join('\n'),
    'round.txt': `${round}\n`,
  };
}

function delayOf(line: string, at: number): number | undefined {
  const m = TICK.exec(line);
  return m ? at - Number(m[1]) * 1000 : undefined;
}

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const lines = ctx.quick ? 40 : 300;
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : ctx.full ? 7 : 5);
  const tmp = await mkdtemp(join(tmpdir(), 'bench-loglat-'));
  const imageRepo = uniqueName('bench-loglat');
  let registry: TestRegistry | undefined;
  let repo: SiteRepo | undefined;
  let daemon: DaemonProcess | undefined;
  try {
    registry = await startRegistry({ auth: true });
    repo = await createSiteRepo();
    const reg = registry;
    const image = `${reg.host}/${imageRepo}`;
    daemon = await startDaemonProcess({
      // The classic builder, as the baseline's `docker build` (DOCKER_BUILDKIT=0): like for like.
      pipelines: [
        { name: 'site', repo: REPO, url: repo.url, image, services: [], build: { builder: 'classic' } },
        // And BuildKit, against `docker build` through buildx with --progress=plain.
        { name: 'site-bk', repo: REPO, url: repo.url, branch: 'bk', image: `${image}-bk`, services: [], build: { builder: 'buildkit' } },
      ],
      registry: { host: reg.host, username: reg.username, password: reg.password },
      http: true,
      worker: true,
      logFile: join(tmp, 'daemon.log'),
      ...(ctx.cpuProf ? { cpuProfDir: join(ctx.outDir, 'profiles'), profileName: 'log-latency-daemon' } : {}),
    });
    const url = daemon.ready.url;
    const ctxDir = join(tmp, 'context');
    await mkdir(ctxDir);
    await copyBusybox(ctxDir);
    let n = 0;

    // (A) `docker build` of the same files, its output read line by line as it comes
    // (classic: stdout; BuildKit through buildx, --progress=plain: stderr).
    const viaDocker = async (buildkit: boolean): Promise<Round> => {
      await writeFiles(ctxDir, files(lines, `a-${n++}-${Date.now()}`));
      // Its own repository: the deployer prunes old images of the pipeline's repository
      // after each run, and a prune racing this build once deleted a layer under it.
      const args = buildkit ? ['build', '--progress=plain', '--tag', `${image}-cli:bk`, ctxDir] : ['build', '--force-rm', '--tag', `${image}-cli:latest`, ctxDir];
      const child = spawn('docker', args, {
        env: baseEnv({ DOCKER_BUILDKIT: buildkit ? '1' : '0', DOCKER_CLI_HINTS: 'false', DOCKER_CONFIG: join(tmp, 'docker-config') }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out = buildkit ? child.stderr : child.stdout;
      const delays: number[] = [];
      let batches = 0;
      out.on('data', () => batches++);
      const rl = createInterface({ input: out });
      rl.on('line', (line) => {
        const d = delayOf(line, now());
        if (d !== undefined) delays.push(d);
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      if (code !== 0) throw new Error(`docker build exited ${code}: ${stderr.slice(-2000)}`);
      return { delays, emitted: lines, received: delays.length, batches };
    };

    // (B) a signed push; an SSE client follows the run from before its build starts.
    const viaDeployer = async (branch: 'main' | 'bk'): Promise<Round> => {
      const sha = await repo!.commit(files(lines, `b-${n++}-${Date.now()}`), 'log latency');
      if (branch !== 'main') await git(['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`], repo!.workDir);
      const res = await deliver(url, pushPayload(REPO, branch, sha), { secret: daemon!.ready.secret });
      if (res.status !== 202) throw new Error(`push answered ${res.status}`);
      const runId = res.body.runs[0] as string;
      const delays: number[] = [];
      let batches = 0;
      let status = '';
      const abort = AbortSignal.timeout(300_000);
      for await (const m of readSse(`${url}/api/runs/${runId}/events?after=0`, { signal: abort, headers: { authorization: `Bearer ${daemon!.ready.adminToken}` } })) {
        const at = now();
        if (m.event === 'log') {
          const text = (JSON.parse(m.data) as { text: string }).text;
          let found = false;
          for (const line of text.split('\n')) {
            const d = delayOf(line, at);
            if (d !== undefined) {
              delays.push(d);
              found = true;
            }
          }
          if (found) batches++;
        } else if (m.event === 'end') {
          status = (JSON.parse(m.data) as { status: string }).status;
        }
      }
      if (status !== 'succeeded') throw new Error(`run ${runId} ended ${status || '(stream closed early)'}`);
      return { delays, emitted: lines, received: delays.length, batches };
    };

    const { a, b, truncated } = await interleave({
      pairs,
      warmup: 1, // the mirror clone, the busybox layers in the cache, the first run
      deadline: ctx.deadline,
      a: () => viaDocker(false),
      b: () => viaDeployer('main'),
      onRound: (i, ra, rb) =>
        ctx.log(`pair ${i + 1}/${pairs}: docker build p50 ${p50(ra.delays).toFixed(1)} / p99 ${p99(ra.delays).toFixed(1)} ms; SSE p50 ${p50(rb.delays).toFixed(1)} / p99 ${p99(rb.delays).toFixed(1)} ms (${rb.received}/${rb.emitted} lines in ${rb.batches} events)`),
    });
    const bk = await interleave({
      pairs,
      // The mirror is cloned and the busybox layers are cached by now; smoke mode skips this warm-up.
      warmup: ctx.quick ? 0 : 1,
      deadline: ctx.deadline,
      a: () => viaDocker(true),
      b: () => viaDeployer('bk'),
      onRound: (i, ra, rb) =>
        ctx.log(`BuildKit pair ${i + 1}/${pairs}: docker build --progress=plain p50 ${p50(ra.delays).toFixed(1)} / p99 ${p99(ra.delays).toFixed(1)} ms; SSE p50 ${p50(rb.delays).toFixed(1)} / p99 ${p99(rb.delays).toFixed(1)} ms (${rb.received}/${rb.emitted} lines in ${rb.batches} events)`),
    });

    const all = (rs: Round[]) => rs.flatMap((r) => r.delays);
    const aAll = all(a);
    const bAll = all(b);
    const lost = b.reduce((s, r) => s + (r.emitted - r.received), 0);
    const lostA = a.reduce((s, r) => s + (r.emitted - r.received), 0);
    const rows: Row[] = [
      // The engine's own delay is well under a millisecond, so a ratio says little: the
      // difference is what the deployer adds.
      { metric: 'line delay p50 (all lines of all rounds)', unit: 'ms', baseline: p50(aAll), deployer: p50(bAll), ratio: null, goal: '', met: null, note: `+${(p50(bAll) - p50(aAll)).toFixed(1)} ms` },
      { metric: 'line delay p99 (all lines of all rounds)', unit: 'ms', baseline: p99(aAll), deployer: p99(bAll), ratio: null, goal: '< 200 ms', met: p99(bAll) < 200, note: `+${(p99(bAll) - p99(aAll)).toFixed(1)} ms` },
      { metric: 'line delay p99 per round (median)', unit: 'ms', baseline: median(a.map((r) => p99(r.delays))), deployer: median(b.map((r) => p99(r.delays))), ratio: null, goal: '', met: null },
      { metric: 'line delay max', unit: 'ms', baseline: Math.max(...aAll), deployer: Math.max(...bAll), ratio: null, goal: '', met: null },
      { metric: 'lines per delivery (median)', unit: '', baseline: median(a.map((r) => r.received / Math.max(1, r.batches))), deployer: median(b.map((r) => r.received / Math.max(1, r.batches))), ratio: null, goal: '', met: null },
      { metric: 'lines lost (emitted, never received)', unit: '', baseline: lostA, deployer: lost, ratio: null, goal: '0', met: lost === 0 },
      { metric: 'BuildKit: line delay p50 (all lines of all rounds)', unit: 'ms', baseline: p50(all(bk.a)), deployer: p50(all(bk.b)), ratio: null, goal: '', met: null, note: `+${(p50(all(bk.b)) - p50(all(bk.a))).toFixed(1)} ms` },
      { metric: 'BuildKit: line delay p99 (all lines of all rounds)', unit: 'ms', baseline: p99(all(bk.a)), deployer: p99(all(bk.b)), ratio: null, goal: '< 200 ms', met: p99(all(bk.b)) < 200, note: `+${(p99(all(bk.b)) - p99(all(bk.a))).toFixed(1)} ms` },
      { metric: 'BuildKit: lines lost (emitted, never received)', unit: '', baseline: bk.a.reduce((s, r) => s + (r.emitted - r.received), 0), deployer: bk.b.reduce((s, r) => s + (r.emitted - r.received), 0), ratio: null, goal: '0', met: bk.b.every((r) => r.received === r.emitted) },
    ];
    return {
      params: { lines, intervalMs: 10, pairs: a.length, buildkitPairs: bk.a.length, truncated: truncated || bk.truncated },
      rows,
      notes: [
        `${a.length} pair(s) after one warm-up pair; each build prints ${lines} lines, one every ~10 ms plus a process start (busybox \`ts '%.s'\` stamps each line with the wall clock as it leaves the step).`,
        'Delay = the wall clock when the client has the line − its stamp. Container and bench share one kernel clock, so no clock offset enters.',
        'A: `docker build` (classic builder) of the same files, read line by line from its stdout. B: the deployer (HTTP + worker in one child process) from a signed push; the SSE client connects when the push is answered, before the build starts.',
        'BuildKit rows: A = `docker build --progress=plain` through buildx (DOCKER_BUILDKIT=1), read from its stderr; B = the same deployer with a `builder: buildkit` pipeline (the status stream decoded and rendered as #N lines).',
        'The deployer batches log lines for up to 50 ms at the worker (one Redis entry per batch instead of per line), so its delay is expected near the engine\'s plus ~25 ms on average.',
      ],
      samples: { docker: a.map((r) => ({ ...r, delays: undefined, p50: p50(r.delays), p99: p99(r.delays) })), deployer: b.map((r) => ({ ...r, delays: undefined, p50: p50(r.delays), p99: p99(r.delays) })) },
    };
  } finally {
    const prefix = daemon?.ready.redisPrefix;
    const redisUrl = daemon?.ready.redisUrl;
    const dataDir = daemon?.ready.dataDir;
    const errors = await cleanupAll([
      async () => daemon?.stop(),
      async () => prefix && redisUrl && clearRedis(redisUrl, prefix, ['site', 'site-bk']),
      () => removeDataDir(dataDir),
      async () => (registry ? removeImages(`${registry.host}/${imageRepo}`) : undefined),
      async () => (registry ? removeImages(`${registry.host}/${imageRepo}-cli`) : undefined),
      async () => (registry ? removeImages(`${registry.host}/${imageRepo}-bk`) : undefined),
      async () => registry?.stop(),
      async () => repo?.cleanup(),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
