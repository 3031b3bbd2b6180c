// Issue #11, item 10: retention must not block the event loop (deleting 521 runs once
// delayed start-up by ~15 s and broke Redis connects). A store is seeded with finished
// runs (each with a log), then pruned down to 10 runs while a 1 ms timer measures the
// longest gap the event loop left it (how long a request would have waited). Three
// figures, in the same run on copies of the same database: the loop idle (baseline),
// retention all at once (one synchronous call, as before), and the daemon's batched
// retention (src/queue/reconciler.ts pruneInBatches). Goal: the longest block ≤ 50 ms.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pruneInBatches } from '../../src/queue/reconciler.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore } from '../../src/store/run-store.ts';
import type { Row, Scenario, ScenarioContext, ScenarioResult } from '../lib/report.ts';
import { ratio } from '../lib/stats.ts';

export const retention: Scenario = {
  name: 'retention',
  title: 'Retention of thousands of runs: the longest event-loop block',
  run: runScenario,
};

const KEEP = 10;
const LOG_LINES = 20;

/** Runs `work` while a 1 ms timer chain records the longest gap between its ticks. */
async function longestBlock(work: () => Promise<unknown> | unknown): Promise<{ maxGapMs: number; durationMs: number }> {
  let maxGap = 0;
  let last = performance.now();
  let running = true;
  const tick = () => {
    const t = performance.now();
    maxGap = Math.max(maxGap, t - last);
    last = t;
    if (running) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  const started = performance.now();
  await work();
  const durationMs = performance.now() - started;
  // One more tick, so a block at the very end is counted too.
  await new Promise((r) => setTimeout(r, 5));
  running = false;
  return { maxGapMs: maxGap, durationMs };
}

function seed(file: string, runs: number): void {
  const store = new RunStore(openDatabase(file));
  const at = new Date().toISOString();
  const lines = Array.from({ length: LOG_LINES }, (_, i) => `#${i} [build] step output line ${i} ${'x'.repeat(60)}`);
  for (let done = 0; done < runs; done += 500) {
    const ids = store.createRuns(Array.from({ length: Math.min(500, runs - done) }, (_, i) => ({ pipeline: 'site', trigger: 'push' as const, commit: String((done + i) % 10).repeat(40) }))).map((r) => r.id);
    for (const id of ids) {
      store.apply({ type: 'run.started', runId: id, at, worker: 'w', attempt: 1 });
      store.apply({ type: 'log', runId: id, stage: 'build', at, lines });
      store.apply({ type: 'run.finished', runId: id, status: 'succeeded', at });
    }
  }
  store.close();
}

async function runScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const runs = ctx.quick ? 500 : 10_000;
  const dir = mkdtempSync(join(tmpdir(), 'bench-retention-'));
  try {
    const seeded = join(dir, 'seeded.db');
    const t0 = Date.now();
    seed(seeded, runs);
    ctx.log(`seeded ${runs} finished runs with ${LOG_LINES}-line logs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const pipelines = [{ name: 'site', retention: { runs: KEEP, ageMs: 365 * 86_400_000, logBytes: 0, images: 0 } }];
    const quiet = { info: () => undefined };

    const baseline = await longestBlock(() => new Promise((r) => setTimeout(r, 500)));
    ctx.log(`idle: longest gap ${baseline.maxGapMs.toFixed(1)} ms over 500 ms`);

    const copy = (name: string) => {
      const file = join(dir, `${name}.db`);
      copyFileSync(seeded, file);
      return new RunStore(openDatabase(file));
    };
    const once = copy('once');
    let removedOnce = 0;
    const allAtOnce = await longestBlock(() => (removedOnce = once.prune('site', KEEP, 365 * 86_400_000)));
    once.close();
    ctx.log(`all at once: removed ${removedOnce} in ${allAtOnce.durationMs.toFixed(0)} ms, longest block ${allAtOnce.maxGapMs.toFixed(1)} ms`);

    const batchedStore = copy('batched');
    let removedBatched = 0;
    const batched = await longestBlock(async () => (removedBatched = await pruneInBatches(batchedStore, pipelines, quiet, { batch: 50 })));
    batchedStore.close();
    ctx.log(`batched: removed ${removedBatched} in ${batched.durationMs.toFixed(0)} ms, longest block ${batched.maxGapMs.toFixed(1)} ms`);
    if (removedOnce !== runs - KEEP || removedBatched !== runs - KEEP) throw new Error(`expected ${runs - KEEP} runs removed, got ${removedOnce} at once and ${removedBatched} batched`);

    const rows: Row[] = [
      { metric: `longest event-loop block while pruning ${runs - KEEP} runs, batched (baseline: idle loop)`, unit: 'ms', baseline: baseline.maxGapMs, deployer: batched.maxGapMs, ratio: ratio(batched.maxGapMs, baseline.maxGapMs), goal: '≤ 50 ms', met: batched.maxGapMs <= 50 },
      { metric: `longest event-loop block, all at once as before (baseline: idle loop)`, unit: 'ms', baseline: baseline.maxGapMs, deployer: allAtOnce.maxGapMs, ratio: ratio(allAtOnce.maxGapMs, baseline.maxGapMs), goal: '', met: null, note: 'the behaviour this replaces' },
      { metric: 'total time to prune, batched vs all at once', unit: 'ms', baseline: allAtOnce.durationMs, deployer: batched.durationMs, ratio: ratio(batched.durationMs, allAtOnce.durationMs), goal: '', met: null, note: 'the price of yielding' },
    ];
    return {
      params: { runs, keep: KEEP, logLines: LOG_LINES, batch: 50 },
      rows,
      notes: [`longest block batched ${batched.maxGapMs.toFixed(1)} ms vs ${allAtOnce.maxGapMs.toFixed(1)} ms all at once (idle ${baseline.maxGapMs.toFixed(1)} ms)`],
      samples: { baseline, allAtOnce, batched },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
