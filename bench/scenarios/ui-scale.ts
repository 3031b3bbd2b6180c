// Scenario 4: the UI and API over a big store: 20 pipelines, 10,000 runs and
// 1,000,000 log lines, filled directly through src/store (RunStore.createRuns / apply,
// logs as log events), then p50/p99 of each page and API route against /healthz in the same run
// (interleaved: a /healthz batch right before each route's batch). The log endpoint's
// memory is watched through the kernel's peak-RSS counter of the daemon process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunEvent } from '../../src/pipeline/events.ts';
import type { StageName } from '../../src/pipeline/states.ts';
import { openDatabase } from '../../src/store/db.ts';
import { AuditStore } from '../../src/store/audit-store.ts';
import { RunStore, type NewRun } from '../../src/store/run-store.ts';
import type { TestPipeline } from '../../test/helpers/config.ts';
import { cleanupAll, clearRedis } from '../lib/cleanup.ts';
import { startDaemonProcess, type DaemonProcess } from '../lib/daemon-process.ts';
import { SequentialClient } from '../lib/http.ts';
import { MiB, readMemory, resetPeak, toMiB } from '../lib/proc.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { median, p50, p99, ratio } from '../lib/stats.ts';

export const uiScale: Scenario = {
  name: 'ui-scale',
  title: 'UI and API latency over a store of 10,000 runs and 1,000,000 log lines',
  run: runScenario,
};

const LINE_TEMPLATES = [
  (i: number) => `Step ${(i % 9) + 1}/9 : RUN make -C site build JOBS=2 TARGET=prod OUT=/srv/www/${i}`,
  (i: number) => ` ---> Running in ${hex(i, 12)}`,
  (i: number) => `[${String(i % 60).padStart(2, '0')}:${String(i % 97).padStart(2, '0')}] compiling src/pages/page_${i % 500}.ml (bytecode + native) ok`,
  (i: number) => ` ---> ${hex(i * 7, 12)}`,
  (i: number) => `Removing intermediate container ${hex(i * 13, 12)}`,
  (i: number) => `dune build @install --profile release: ${i % 1000} targets up to date, ${i % 7} rebuilt`,
];

function hex(n: number, len: number): string {
  let s = '';
  let x = (n * 2654435761) >>> 0;
  while (s.length < len) {
    s += x.toString(16);
    x = (x * 1103515245 + 12345) >>> 0;
  }
  return s.slice(0, len);
}

function lines(from: number, count: number): string[] {
  const out: string[] = [];
  for (let i = from; i < from + count; i++) out.push(LINE_TEMPLATES[i % LINE_TEMPLATES.length]!(i));
  return out;
}

interface FillStats {
  runs: number;
  lines: number;
  chunks: number;
  logBytes: number;
  ms: number;
  bigRun: string;
  mediumRun: string;
  mediumRunBytes: number;
  bigRunLines: number;
  bigRunBytes: number;
  typicalRun: string;
  typicalPipeline: string;
}

function fillStore(dbPath: string, size: { pipelines: number; runs: number; lines: number; bigLines: number; mediumLines: number }, log: (m: string) => void): FillStats {
  const started = performance.now();
  const db = openDatabase(dbPath);
  const store = new RunStore(db);
  const names = Array.from({ length: size.pipelines }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  // Every line is written: the normal runs share what the big run leaves, ±1.
  const normalRuns = Math.max(1, size.runs - 2);
  const spread = size.lines - size.bigLines - size.mediumLines;
  const perRunBase = Math.floor(spread / normalRuns);
  const extra = spread - perRunBase * normalRuns;
  const bigIndex = Math.floor(size.runs / 2);
  const mediumIndex = bigIndex + 1;
  let normalNo = 0;
  const t0 = Date.parse('2025-01-01T00:00:00Z');
  const iso = (ms: number) => new Date(ms).toISOString();
  let lineNo = 0;
  let chunks = 0;
  let logBytes = 0;
  let bigRun = '';
  let mediumRun = '';
  let mediumRunBytes = 0;
  let bigRunBytes = 0;
  let typicalRun = '';
  const typicalPipeline = names[7 % names.length]!;
  const apply = (e: RunEvent) => {
    if (!store.apply(e)) throw new Error(`store refused ${e.type} for ${e.runId}`);
  };
  const appendLines = (runId: string, stage: StageName, at: string, count: number, chunkSize: number): number => {
    let bytes = 0;
    for (let done = 0; done < count; done += chunkSize) {
      const batch = lines(lineNo, Math.min(chunkSize, count - done));
      lineNo += batch.length;
      apply({ type: 'log', runId, stage, at, lines: batch });
      chunks++;
      bytes += batch.reduce((a, l) => a + l.length + 1, 0);
    }
    return bytes;
  };
  const BATCH = 100;
  for (let first = 0; first < size.runs; first += BATCH) {
    const batch: NewRun[] = [];
    for (let i = first; i < Math.min(size.runs, first + BATCH); i++) {
      batch.push({ pipeline: names[i % names.length]!, trigger: 'push', commit: hex(i, 40), subject: `Update page ${i}`, author: 'Bench Author', deliveryId: `bench-delivery-${i}` });
    }
    const views = store.createRuns(batch);
    views.forEach((view, k) => {
      const i = first + k;
      const base = t0 + i * 60_000;
      const big = i === bigIndex;
      const medium = i === mediumIndex;
      const special = big || medium;
      const failed = !special && i % 13 === 5;
      apply({ type: 'run.started', runId: view.id, at: iso(base + 100), worker: 'bench', attempt: 1 } as RunEvent);
      const n = special ? 0 : perRunBase + (normalNo++ < extra ? 1 : 0);
      const tenth = Math.round(n * 0.1);
      // A failed run stops at build: its build printed what push and deploy would have.
      const stagePlan: [StageName, number][] = special
        ? [['fetch', 0], ['build', big ? size.bigLines : size.mediumLines], ['push', 0], ['deploy', 0]]
        : failed
          ? [['fetch', tenth], ['build', n - tenth], ['push', 0], ['deploy', 0]]
          : [['fetch', tenth], ['build', n - 3 * tenth], ['push', tenth], ['deploy', tenth]];
      let tm = base + 200;
      let runBytes = 0;
      for (const [stage, count] of stagePlan) {
        if (failed && stage !== 'fetch' && stage !== 'build') {
          apply({ type: 'stage.finished', runId: view.id, stage, status: 'skipped', at: iso(tm) });
          continue;
        }
        apply({ type: 'stage.started', runId: view.id, stage, at: iso(tm) });
        // The worker sends at most 500 lines per event; a normal build trickles smaller ones.
        runBytes += appendLines(view.id, stage, iso(tm + 10), count, special ? 500 : 20);
        tm += 5_000;
        const fail = failed && stage === 'build';
        apply({ type: 'stage.finished', runId: view.id, stage, status: fail ? 'failed' : 'succeeded', at: iso(tm), ...(fail ? { error: 'The command returned a non-zero code: 2' } : {}) });
        if (!failed && stage === 'push') apply({ type: 'image', runId: view.id, ref: `127.0.0.1:5999/${view.pipeline}:live@sha256:${hex(i, 64)}`, digest: `sha256:${hex(i, 64)}` });
        if (!failed && stage === 'deploy') {
          apply({ type: 'deployed', runId: view.id, service: `www-${view.pipeline}`, image: `127.0.0.1:5999/${view.pipeline}:live@sha256:${hex(i, 64)}`, digest: `sha256:${hex(i, 64)}`, commit: view.commit!, at: iso(tm) });
        }
      }
      apply({ type: 'run.finished', runId: view.id, status: failed ? 'failed' : 'succeeded', at: iso(tm + 50), ...(failed ? { error: 'build: The command returned a non-zero code: 2' } : {}) });
      logBytes += runBytes;
      if (big) {
        bigRun = view.id;
        bigRunBytes = runBytes;
      } else if (medium) {
        mediumRun = view.id;
        mediumRunBytes = runBytes;
      } else if (view.pipeline === typicalPipeline) {
        typicalRun = view.id;
      }
    });
    if ((first / BATCH) % 20 === 19) log(`filled ${first + BATCH} runs, ${lineNo} lines`);
  }
  // The audit trail of a busy team: an entry per run (who rebuilt, cancelled, …) and sign-ins.
  const audit = new AuditStore(db);
  const actions = ['rebuild', 'cancel', 'rollback', 'pause', 'resume', 'check-now', 'sign-in', 'token-use'];
  for (let i = 0; i < size.runs; i++) {
    audit.record({ actor: `user${i % 25}`, role: i % 3 === 0 ? 'admin' : 'operator', via: i % 2 ? 'session:github' : 'token', action: actions[i % actions.length]!, target: names[i % names.length]!, result: i % 17 === 3 ? 'refused' : 'ok', detail: null, address: `10.0.${i % 256}.${i % 200}` }, new Date(t0 + i * 60_000));
  }
  db.close();
  return { runs: size.runs, lines: lineNo, chunks, logBytes, ms: performance.now() - started, bigRun, bigRunLines: size.bigLines, bigRunBytes, mediumRun, mediumRunBytes, typicalRun, typicalPipeline };
}

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  // Almost half of the lines are one run's (a huge build log): the case where streaming
  // matters; a run with a tenth of that tells whether memory follows the log's size.
  const size = ctx.quick
    ? { pipelines: 20, runs: 200, lines: 10_000, bigLines: 2_000, mediumLines: 200, requests: 5, bigRequests: 2, rounds: 1 }
    : { pipelines: 20, runs: 10_000, lines: 1_000_000, bigLines: 450_000, mediumLines: 45_000, requests: 150, bigRequests: 6, rounds: ctx.pairs ?? (ctx.full ? 5 : 3) };
  const tmp = await mkdtemp(join(tmpdir(), 'bench-ui-'));
  let daemon: DaemonProcess | undefined;
  let client: SequentialClient | undefined;
  try {
    ctx.log(`filling the store: ${size.runs} runs over ${size.pipelines} pipelines, ${size.lines} log lines (one run with ${size.bigLines}, one with ${size.mediumLines})`);
    const fill = fillStore(join(tmp, 'deployer.db'), size, ctx.log);
    ctx.log(`filled in ${(fill.ms / 1000).toFixed(1)} s: ${fill.chunks} log chunks, ${toMiB(fill.logBytes).toFixed(0)} MiB of log text`);
    const pipelines: TestPipeline[] = Array.from({ length: size.pipelines }, (_, i) => {
      const name = `site-${String(i).padStart(2, '0')}`;
      return { name, repo: `acme/${name}`, branch: 'main', image: `127.0.0.1:5999/${name}`, services: [`www-${name}`] };
    });
    daemon = await startDaemonProcess({
      pipelines,
      dataDir: tmp,
      http: true,
      worker: false,
      logFile: join(tmp, 'daemon.log'),
      ...(ctx.cpuProf ? { cpuProfDir: join(ctx.outDir, 'profiles'), profileName: 'ui-scale-daemon' } : {}),
    });
    client = new SequentialClient(daemon.ready.url, { authorization: `Bearer ${daemon.ready.adminToken}` });
    const pid = daemon.pid;

    const routes: { name: string; path: string; page: boolean; count: number; watchMemory?: boolean }[] = [
      { name: 'GET /', path: '/', page: true, count: size.requests },
      { name: 'GET /pipelines/:name', path: `/pipelines/${fill.typicalPipeline}`, page: true, count: size.requests },
      { name: 'GET /runs/:id (typical run)', path: `/runs/${fill.typicalRun}`, page: true, count: size.requests },
      { name: 'GET /pipelines/:name?status=failed', path: `/pipelines/${fill.typicalPipeline}?status=failed`, page: true, count: size.requests },
      { name: 'GET /runs (all pipelines)', path: '/runs', page: true, count: size.requests },
      { name: 'GET /runs?status=failed&trigger=push', path: '/runs?status=failed&trigger=push', page: true, count: size.requests },
      { name: 'GET /audit', path: '/audit', page: true, count: size.requests },
      { name: 'GET /audit?actor=user7', path: '/audit?actor=user7', page: true, count: size.requests },
      { name: 'GET /api/audit', path: '/api/audit', page: false, count: size.requests },
      { name: 'GET /api/runs?status=failed', path: '/api/runs?status=failed', page: false, count: size.requests },
      { name: 'GET /api/pipelines', path: '/api/pipelines', page: false, count: size.requests },
      { name: 'GET /api/runs/:id', path: `/api/runs/${fill.typicalRun}`, page: false, count: size.requests },
      { name: 'GET /api/runs/:id/log (typical run)', path: `/api/runs/${fill.typicalRun}/log`, page: false, count: size.requests },
      { name: `GET /api/runs/:id/log (${size.mediumLines} lines)`, path: `/api/runs/${fill.mediumRun}/log`, page: false, count: size.bigRequests, watchMemory: true },
      { name: `GET /api/runs/:id/log (${size.bigLines} lines)`, path: `/api/runs/${fill.bigRun}/log`, page: false, count: size.bigRequests, watchMemory: true },
      { name: `GET /runs/:id (${size.bigLines}-line log)`, path: `/runs/${fill.bigRun}`, page: true, count: size.bigRequests, watchMemory: true },
    ];
    // /healthz answers 503 when a check (Redis, SQLite, Docker) takes over 2 s: still an
    // answer of the daemon, counted and reported.
    const healthOk = (status: number) => status === 200 || status === 503;
    let health503 = 0;
    const healthBatch = async (count: number) => {
      const res = await client!.measure('/healthz', count, ctx.deadline, healthOk);
      health503 += res.filter((x) => x.status === 503).length;
      return res;
    };
    // Warm-up: JIT, SQLite page cache.
    await healthBatch(20);
    for (const r of routes) await client.measure(r.path, Math.min(5, r.count), ctx.deadline);

    const samples = new Map<string, number[]>();
    const health = new Map<string, number[]>();
    const peaks = new Map<string, number[]>();
    const bytes = new Map<string, number>();
    const push = (m: Map<string, number[]>, k: string, v: number[]) => m.set(k, [...(m.get(k) ?? []), ...v]);
    for (let round = 0; round < size.rounds; round++) {
      if (round > 0 && Date.now() > ctx.deadline) break;
      for (const r of routes) {
        const h = await healthBatch(r.count);
        push(health, r.name, h.map((x) => x.ms));
        const before = readMemory(pid).rss;
        resetPeak(pid);
        const res = await client.measure(r.path, r.count, ctx.deadline);
        if (r.watchMemory) push(peaks, r.name, [readMemory(pid).hwm - before]);
        push(samples, r.name, res.map((x) => x.ms));
        bytes.set(r.name, res[0]?.bytes ?? 0);
      }
      ctx.log(`round ${round + 1}/${size.rounds}: ${routes.map((r) => `${r.path.split('?')[0]!.split('/').slice(0, 3).join('/')} p50 ${p50(samples.get(r.name)!).toFixed(1)} ms`).join(', ')}`);
    }
    // The streaming check proper: a reader that takes its time. A server that streams
    // with backpressure holds a few chunks; one that buffers holds the whole log.
    const slow: { ms: number; growth: number }[] = [];
    for (let i = 0; i < 2; i++) {
      const before = readMemory(pid).rss;
      resetPeak(pid);
      const r = await client.slowGet(`/api/runs/${fill.bigRun}/log`, 2, 30_000);
      slow.push({ ms: r.ms, growth: readMemory(pid).hwm - before });
    }
    // Peak RSS growth of a /healthz batch, as the memory baseline.
    const hBefore = readMemory(pid).rss;
    resetPeak(pid);
    await healthBatch(size.bigRequests);
    const healthPeak = readMemory(pid).hwm - hBefore;
    const rssAfter = readMemory(pid).rss;

    const rows: Row[] = [];
    for (const r of routes) {
      const s = samples.get(r.name)!;
      const h = health.get(r.name)!;
      rows.push({ metric: `${r.name} p50`, unit: 'ms', baseline: p50(h), deployer: p50(s), ratio: ratio(p50(s), p50(h)), goal: '', met: null });
      rows.push({
        metric: `${r.name} p99`,
        unit: 'ms',
        baseline: p99(h),
        deployer: p99(s),
        ratio: ratio(p99(s), p99(h)),
        goal: r.page ? '< 30 ms' : '',
        met: r.page ? p99(s) < 30 : null,
        note: `${s.length} requests, ${(bytes.get(r.name)! / 1024).toFixed(0)} KiB each`,
      });
    }
    // "Flat": holding the log (even once, as one string) would grow RSS by at least its
    // size; streaming keeps the growth well under it: under half of it, and at least
    // 4 MiB of slack for V8's young generation. The run with a tenth of the log shows
    // how the growth scales.
    const bigLog = routes.find((r) => r.path === `/api/runs/${fill.bigRun}/log`)!;
    const mediumLog = routes.find((r) => r.path === `/api/runs/${fill.mediumRun}/log`)!;
    const bigPage = routes.find((r) => r.path === `/runs/${fill.bigRun}`)!;
    const peakOf = (r: (typeof routes)[number]) => median(peaks.get(r.name)!);
    const flatLimit = Math.max(fill.bigRunBytes / 2, 4 * MiB);
    rows.push({ metric: `${mediumLog.name}: peak RSS growth`, unit: 'MiB', baseline: toMiB(healthPeak), deployer: toMiB(peakOf(mediumLog)), ratio: null, goal: '', met: null, note: `log ${toMiB(fill.mediumRunBytes).toFixed(1)} MiB` });
    rows.push({ metric: `${bigLog.name}: peak RSS growth`, unit: 'MiB', baseline: toMiB(healthPeak), deployer: toMiB(peakOf(bigLog)), ratio: null, goal: '', met: null, note: `log ${toMiB(fill.bigRunBytes).toFixed(1)} MiB; fast reader: mostly young-generation garbage` });
    const slowGrowth = median(slow.map((x) => x.growth));
    rows.push({
      metric: `${bigLog.name}, slow reader: peak RSS growth`,
      unit: 'MiB',
      baseline: toMiB(healthPeak),
      deployer: toMiB(slowGrowth),
      ratio: null,
      goal: `flat (< ${toMiB(flatLimit).toFixed(1)} MiB)`,
      met: slowGrowth < flatLimit,
      note: `log ${toMiB(fill.bigRunBytes).toFixed(1)} MiB read in ${(median(slow.map((x) => x.ms)) / 1000).toFixed(1)} s`,
    });
    rows.push({ metric: `${bigPage.name}: peak RSS growth`, unit: 'MiB', baseline: toMiB(healthPeak), deployer: toMiB(peakOf(bigPage)), ratio: null, goal: '', met: null });
    const notes = [
      `Memory goal "flat", judged with a slow reader (it pauses 2 ms after every chunk, so the log takes seconds to read): peak RSS growth under half the log's size (at least 4 MiB); a server that held the ${toMiB(fill.bigRunBytes).toFixed(1)} MiB log would grow by at least its size. A fast reader's figure is mostly short-lived garbage (strings from SQLite, Buffers for the socket) made faster than the young generation is collected; the ${toMiB(fill.mediumRunBytes).toFixed(1)} MiB log shows how it scales.`,
      `Store: ${fill.runs} runs over ${size.pipelines} pipelines (1 in 13 failed at build), ${fill.lines} log lines in ${fill.chunks} chunks (20 lines per chunk, the big run 500), ${toMiB(fill.logBytes).toFixed(0)} MiB of log text; the big run's log is ${toMiB(fill.bigRunBytes).toFixed(1)} MiB.`,
      `Filled through RunStore (createRuns in batches of 100, apply) in ${(fill.ms / 1000).toFixed(1)} s (${Math.round(fill.lines / (fill.ms / 1000))} lines/s).`,
      `One keep-alive connection, requests one after another, timed to the last byte; per round a /healthz batch of the same size runs right before each route; ${size.rounds} round(s), ${size.requests} requests per batch (${size.bigRequests} for the big-log routes).`,
      `/healthz pings Redis, SQLite and the Docker engine: it is the floor of a request that touches the daemon (it answered 503 ${health503} time(s), a check over 2 s on a busy engine).`,
      `Peak RSS growth = the kernel's VmHWM of the daemon during the batch − RSS before it (reset through /proc/PID/clear_refs). Daemon RSS at the end: ${toMiB(rssAfter).toFixed(0)} MiB.`,
    ];
    return { params: { ...size, fillMs: Math.round(fill.ms), logBytes: fill.logBytes, bigRunBytes: fill.bigRunBytes, logMiB: Math.round(fill.logBytes / MiB) }, rows, notes, samples: { latencyMs: Object.fromEntries(samples), peakGrowthBytes: Object.fromEntries(peaks), slowReader: slow } };
  } finally {
    client?.close();
    const ready = daemon?.ready;
    const errors = await cleanupAll([
      async () => daemon?.stop(),
      async () => ready && clearRedis(ready.redisUrl, ready.redisPrefix, Array.from({ length: size.pipelines }, (_, i) => `site-${String(i).padStart(2, '0')}`)),
      () => rm(tmp, { recursive: true, force: true }),
    ]);
    if (errors.length) ctx.log(`cleanup problems: ${errors.join('; ')}`);
  }
}
