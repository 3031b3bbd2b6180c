// Scenario 2: signed ~10 KB push deliveries at full speed (autocannon) against
// (a) a branch no pipeline deploys (verify + parse + record the delivery) and
// (b) the deploy branch with a new delivery id each time (verify + record + enqueue),
// set against a bare Fastify route answering 202, in the same run, interleaved.
// The deployer runs in its own process (workers off: only ingest is measured), the
// bare server in another, autocannon in this one.
import { mkdtemp, rm } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { cleanupAll, clearRedis, removeDataDir } from '../lib/cleanup.ts';
import { startDaemonProcess, type DaemonProcess } from '../lib/daemon-process.ts';
import { pushBody, signedHeaders } from '../lib/payload.ts';
import { cpuTimeMs, forkChild, readMemory, toMiB, type Child } from '../lib/proc.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { median, ratio } from '../lib/stats.ts';

const REPO = 'acme/site';
const SHA = 'c0ffee'.repeat(6) + 'c0ff';
type Target = 'bare' | 'ignored' | 'deploy';

interface Measured {
  target: Target;
  round: number;
  reqPerSec: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  durationS: number;
  /** Deliveries the store recorded for this round (daemon targets only). */
  recorded?: number;
  runs?: number;
  lost?: number;
  /** CPU ms per 2xx response: the server process, Redis, and the load generator. */
  cpuServer: number;
  cpuRedis: number;
  cpuLoad: number;
}

export const webhookIngest: Scenario = {
  name: 'webhook-ingest',
  title: 'Webhook ingest: signed pushes vs a bare Fastify route',
  run: runScenario,
};

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const size = ctx.quick
    ? { durationS: 1, connections: 4, rounds: 1, warmupS: 0 }
    : { durationS: 10, connections: 10, rounds: ctx.pairs ?? (ctx.full ? 5 : 3), warmupS: 2 };
  const tmp = await mkdtemp(join(tmpdir(), 'bench-ingest-'));
  let daemon: DaemonProcess | undefined;
  let bare: Child | undefined;
  try {
    daemon = await startDaemonProcess({
      pipelines: [{ name: 'site', repo: REPO, branch: 'main', image: '127.0.0.1:5999/site', services: [] }],
      http: true,
      worker: false,
      logFile: join(tmp, 'daemon.log'),
      ...(ctx.cpuProf ? { cpuProfDir: join(ctx.outDir, 'profiles'), profileName: 'webhook-ingest-daemon' } : {}),
    });
    bare = forkChild(join(import.meta.dirname, '..', 'lib', 'bare-server.ts'), { logFile: join(tmp, 'bare.log'), execArgv: [] });
    const bareUrl = (await bare.request<{ url: string }>(undefined, 'ready', 30_000)).url;
    const { url, secret, dataDir, redisUrl, redisPrefix, queues } = daemon.ready;
    const deployBody = Buffer.from(pushBody(REPO, 'main', SHA));
    const ignoredBody = Buffer.from(pushBody(REPO, 'feature/docs', SHA));
    ctx.log(`payloads: ${deployBody.length} and ${ignoredBody.length} bytes; ${size.connections} connections, ${size.durationS} s per measurement, ${size.rounds} round(s)`);
    const db = new DatabaseSync(join(dataDir, 'deployer.db'), { readOnly: true });
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue(queues.site!, { connection: redis, prefix: redisPrefix });

    const fire = async (target: Target, round: number, durationS: number): Promise<Measured> => {
      const body = target === 'ignored' ? ignoredBody : deployBody;
      const base = target === 'bare' ? bareUrl : url;
      const idPrefix = `bench-${target}-${round}-`;
      let n = 0;
      const serverPid = target === 'bare' ? bare!.pid : daemon!.pid;
      const redisCpu = async () => {
        const info = await redis.info('cpu');
        const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
        return (get('used_cpu_sys') + get('used_cpu_user')) * 1000;
      };
      const cpu0 = { server: cpuTimeMs(serverPid), redis: await redisCpu(), load: process.cpuUsage() };
      const result = await autocannon({
        url: `${base}/webhooks/github`,
        method: 'POST',
        connections: size.connections,
        duration: durationS,
        headers: signedHeaders(body.toString('utf8'), secret),
        body,
        requests: [
          {
            setupRequest: (req) => {
              req.headers = { ...req.headers, 'x-github-delivery': `${idPrefix}${n++}` };
              return req;
            },
          },
        ],
      });
      const load = process.cpuUsage(cpu0.load);
      const ok = Math.max(1, result['2xx']);
      const cpu = { cpuServer: (cpuTimeMs(serverPid) - cpu0.server) / ok, cpuRedis: ((await redisCpu()) - cpu0.redis) / ok, cpuLoad: (load.user + load.system) / 1000 / ok };
      const m: Measured = {
        ...cpu,
        target,
        round,
        reqPerSec: result['2xx'] / result.duration,
        ok: result['2xx'],
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        p50: result.latency.p50,
        p90: result.latency.p90,
        p99: result.latency.p99,
        max: result.latency.max,
        durationS: result.duration,
      };
      // Only accepted pushes must be recorded: ignored events are answered from routing
      // alone (a redelivery gets the same answer), so they leave no row by design.
      if (target === 'deploy' && round >= 0) {
        // Let requests still in flight at the end land before counting.
        await new Promise((r) => setTimeout(r, 300));
        const like = `${idPrefix}%`;
        m.recorded = (db.prepare('SELECT COUNT(*) AS n FROM deliveries WHERE id LIKE ?').get(like) as { n: number }).n;
        m.runs = (db.prepare('SELECT COUNT(*) AS n FROM runs WHERE delivery_id LIKE ?').get(like) as { n: number }).n;
        m.lost = Math.max(0, m.ok - m.recorded);
      }
      return m;
    };

    // BENCH_INGEST_TARGETS=deploy (say) measures only some targets: for profiling one path.
    const targets = (process.env.BENCH_INGEST_TARGETS ?? 'bare,ignored,deploy').split(',').filter((t): t is Target => ['bare', 'ignored', 'deploy'].includes(t));
    if (size.warmupS) for (const t of targets) await fire(t, -1, size.warmupS);
    const all: Measured[] = [];
    for (let round = 0; round < size.rounds; round++) {
      if (round > 0 && Date.now() > ctx.deadline) break;
      for (const t of targets) {
        const m = await fire(t, round, size.durationS);
        all.push(m);
        ctx.log(`round ${round + 1} ${t.padEnd(7)}: ${m.reqPerSec.toFixed(0)} 2xx/s, p50 ${m.p50} ms, p99 ${m.p99} ms, non-2xx ${m.non2xx}, errors ${m.errors}${m.lost !== undefined ? `, recorded ${m.recorded}, lost ${m.lost}` : ''}`);
      }
    }
    // ('wait' is BullMQ's own name for 'waiting': naming both counted waiting jobs twice.)
    const jobs = await queue.getJobCountByTypes('waiting', 'active', 'delayed', 'prioritized');
    const rssMiB = toMiB(readMemory(daemon.pid).rss);
    const runsTotal = (db.prepare('SELECT COUNT(*) AS n FROM runs').get() as { n: number }).n;
    const byStatus = db.prepare('SELECT status, COUNT(*) AS n FROM runs GROUP BY status ORDER BY status').all() as { status: string; n: number }[];
    db.close();
    await queue.close();
    redis.disconnect();

    const of = (t: Target) => all.filter((m) => m.target === t);
    const med = (t: Target, f: (m: Measured) => number) => median(of(t).map(f));
    const sum = (t: Target, f: (m: Measured) => number) => of(t).reduce((a, m) => a + f(m), 0);
    const bareRps = med('bare', (m) => m.reqPerSec);
    const ignRps = med('ignored', (m) => m.reqPerSec);
    const depRps = med('deploy', (m) => m.reqPerSec);
    const depP99 = med('deploy', (m) => m.p99);
    const lost = sum('deploy', (m) => m.lost ?? 0);
    const failures = (t: Target) => sum(t, (m) => m.non2xx + m.errors + m.timeouts);
    const rows: Row[] = [
      { metric: '(a) ignored branch: 2xx/s', unit: 'req/s', baseline: bareRps, deployer: ignRps, ratio: ratio(ignRps, bareRps), goal: '≥ 0.50× bare', met: (ratio(ignRps, bareRps) ?? 0) >= 0.5 },
      { metric: '(a) latency p50', unit: 'ms', baseline: med('bare', (m) => m.p50), deployer: med('ignored', (m) => m.p50), ratio: ratio(med('ignored', (m) => m.p50), med('bare', (m) => m.p50)), goal: '', met: null },
      { metric: '(a) latency p99', unit: 'ms', baseline: med('bare', (m) => m.p99), deployer: med('ignored', (m) => m.p99), ratio: ratio(med('ignored', (m) => m.p99), med('bare', (m) => m.p99)), goal: '', met: null },
      { metric: '(a) failed requests (all rounds)', unit: '', baseline: failures('bare'), deployer: failures('ignored'), ratio: null, goal: '', met: null },
      { metric: '(b) deploy branch: accepted pushes/s', unit: 'req/s', baseline: bareRps, deployer: depRps, ratio: ratio(depRps, bareRps), goal: '≥ 2,000/s', met: depRps >= 2000 },
      { metric: '(b) latency p50', unit: 'ms', baseline: med('bare', (m) => m.p50), deployer: med('deploy', (m) => m.p50), ratio: ratio(med('deploy', (m) => m.p50), med('bare', (m) => m.p50)), goal: '', met: null },
      { metric: '(b) latency p99', unit: 'ms', baseline: med('bare', (m) => m.p99), deployer: depP99, ratio: ratio(depP99, med('bare', (m) => m.p99)), goal: '< 50 ms', met: depP99 < 50 },
      { metric: '(b) failed requests (all rounds)', unit: '', baseline: failures('bare'), deployer: failures('deploy'), ratio: null, goal: '', met: null },
      { metric: 'CPU per 2xx: server process, (a)', unit: 'ms', baseline: med('bare', (m) => m.cpuServer), deployer: med('ignored', (m) => m.cpuServer), ratio: ratio(med('ignored', (m) => m.cpuServer), med('bare', (m) => m.cpuServer)), goal: '', met: null },
      { metric: 'CPU per 2xx: server process, (b)', unit: 'ms', baseline: med('bare', (m) => m.cpuServer), deployer: med('deploy', (m) => m.cpuServer), ratio: ratio(med('deploy', (m) => m.cpuServer), med('bare', (m) => m.cpuServer)), goal: '', met: null },
      { metric: 'CPU per 2xx: Redis, (b)', unit: 'ms', baseline: med('bare', (m) => m.cpuRedis), deployer: med('deploy', (m) => m.cpuRedis), ratio: null, goal: '', met: null },
      { metric: 'CPU per 2xx: load generator, (b)', unit: 'ms', baseline: med('bare', (m) => m.cpuLoad), deployer: med('deploy', (m) => m.cpuLoad), ratio: null, goal: '', met: null },
      { metric: 'lost deliveries (accepted push, 202, not recorded)', unit: '', baseline: null, deployer: lost, ratio: null, goal: '0', met: lost === 0 },
    ];
    const notes = [
      `${of('bare').length} round(s) of bare / (a) / (b), ${size.durationS} s each, ${size.connections} connections, after a ${size.warmupS} s warm-up of each; figures are medians over rounds (p50/p99 are per round, from autocannon, whole milliseconds).`,
      `Each request carries a new X-GitHub-Delivery id; the ${deployBody.length}-byte body is signed once (the signature does not cover headers).`,
      'The deployer runs with workers off (HTTP + store + event consumer), log level info to a file, as `serve --no-worker` would; the bare route has no logger.',
      `After the rounds: ${runsTotal} runs in the store (${byStatus.map((r) => `${r.n} ${r.status}`).join(', ') || 'none'}; latest push wins, and no worker runs here), ${jobs} job(s) in the queue, deployer RSS ${rssMiB.toFixed(0)} MiB.`,
      'CPU per 2xx = CPU time (user + system) the process used during the measurement ÷ 2xx answers: the server from /proc/PID/stat (10 ms ticks), Redis from INFO cpu, the load generator (autocannon, this process) from process.cpuUsage().',
      'A delivery is lost when autocannon got a 2xx for a push to the deploy branch but the store has no delivery row for its id (ignored events are not recorded: routing alone answers them, the same way on redelivery).',
    ];
    return { params: { ...size, payloadBytes: deployBody.length }, rows, notes, samples: all };
  } finally {
    const prefix = daemon?.ready.redisPrefix;
    const redisUrl = daemon?.ready.redisUrl;
    const errors = await cleanupAll([
      async () => daemon?.stop(),
      async () => bare?.stop(),
      async () => prefix && redisUrl && clearRedis(redisUrl, prefix, ['site']),
      () => removeDataDir(daemon?.ready.dataDir),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
