import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/daemon.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore } from '../../src/store/run-store.ts';
import { pruneInBatches } from '../../src/queue/reconciler.ts';
import { testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { startRegistry } from '../support/registry.ts';
import { createSiteRepo, siteFiles } from '../support/site.ts';
import { uniqueName } from '../support/swarm.ts';
import { disposeQueues } from '../helpers/world.ts';

const at = () => new Date().toISOString();

describe('retention of runs (real SQLite)', () => {
  it('keeps the newest N finished runs and any run behind a serving deployment; logs go with their runs', () => {
    const store = new RunStore(openDatabase(join(mkdtempSync(join(tmpdir(), 'ret-')), 'd.db')));
    const ids = store.createRuns(Array.from({ length: 10 }, (_, i) => ({ pipeline: 'p', trigger: 'push' as const, commit: String(i).repeat(40) }))).map((r) => r.id);
    for (const id of ids.slice(0, 9)) {
      store.apply({ type: 'run.started', runId: id, at: at(), worker: 'w', attempt: 1 });
      store.apply({ type: 'log', runId: id, stage: 'build', at: at(), lines: ['a line'] });
      // ids[1] deployed what still serves (recorded while it ran: a finished run records nothing more).
      if (id === ids[1]) store.apply({ type: 'deployed', runId: id, service: 's', image: 'r/x:live@sha256:1', digest: 'sha256:1', commit: '1'.repeat(40), at: at() });
      store.apply({ type: 'run.finished', runId: id, status: 'succeeded', at: at() });
    }
    // The run page shows a tail, read from the end, across chunk boundaries (of a run
    // that is running: a waiting run takes no log).
    store.apply({ type: 'run.started', runId: ids[9]!, at: at(), worker: 'w', attempt: 1 });
    store.apply({ type: 'log', runId: ids[9]!, stage: 'build', at: at(), lines: ['one', 'two', 'three'] });
    store.apply({ type: 'log', runId: ids[9]!, stage: 'build', at: at(), lines: ['four', 'five'] });
    expect(store.logTail(ids[9]!, 3)).toEqual({ text: 'three\nfour\nfive\n', totalLines: 5, shownLines: 3 });
    expect(store.logTail(ids[9]!, 10)).toEqual({ text: 'one\ntwo\nthree\nfour\nfive\n', totalLines: 5, shownLines: 5 });
    expect(store.prune('p', 3, 86_400_000)).toBe(6);
    const left = new Set(store.listRuns('p', 100).runs.map((r) => r.id));
    // ids[9] is still running, ids[7..8] are among the newest 3, ids[1] serves.
    expect([...left].sort()).toEqual([ids[1], ids[7], ids[8], ids[9]].sort());
    expect([...store.logChunks(ids[0]!)]).toEqual([]);
    expect(store.prune('p', 100, 0)).toBe(2); // by age: all finished ones except the serving one
    expect(store.deployments('p')).toHaveLength(1); // history is kept
  });
});

describe('retention off the hot path (real SQLite)', () => {
  it('prunes in batches and lets the event loop run between them; the outcome is the same as all at once', async () => {
    const store = new RunStore(openDatabase(join(mkdtempSync(join(tmpdir(), 'ret-')), 'd.db')));
    const ids = store.createRuns(Array.from({ length: 1000 }, (_, i) => ({ pipeline: 'p', trigger: 'push' as const, commit: String(i % 10).repeat(40) }))).map((r) => r.id);
    for (const id of ids) {
      store.apply({ type: 'run.started', runId: id, at: at(), worker: 'w', attempt: 1 });
      store.apply({ type: 'log', runId: id, stage: 'build', at: at(), lines: ['a line', 'another'] });
      store.apply({ type: 'run.finished', runId: id, status: 'succeeded', at: at() });
    }
    // Counts event-loop turns (setImmediate callbacks) while retention runs.
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const logged: unknown[] = [];
    const removed = await pruneInBatches(store, [{ name: 'p', retention: { runs: 100, ageMs: 86_400_000, logBytes: 0, images: 0 } }], { info: (o: unknown) => logged.push(o) }, { batch: 50 });
    ticking = false;
    expect(removed).toBe(900);
    // 900 runs in batches of 50: the loop turned between the batches.
    expect(turns).toBeGreaterThanOrEqual(900 / 50 - 1);
    expect(logged).toEqual([{ pipeline: 'p', removed: 900 }]);
    const left = store.listRuns('p', 1000).runs.map((r) => r.id);
    expect(left.sort()).toEqual(ids.slice(900).sort());
    expect([...store.logChunks(ids[0]!)]).toEqual([]);
    // Stopping ends it after the batch in progress.
    store.createRuns([{ pipeline: 'q', trigger: 'push', commit: null }]);
    expect(await pruneInBatches(store, [{ name: 'p', retention: { runs: 0, ageMs: 86_400_000, logBytes: 0, images: 0 } }], { info: () => undefined }, { batch: 10, stopped: () => true })).toBe(10);
    store.close();
  });
});

describe('bounded logs (real Redis)', () => {
  it('keeps the head and the tail and says what was left out, without holding more in memory', async () => {
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const prefix = `test-${uniqueName('log')}`;
    try {
      const r = new StreamReporter(redis, prefix, 20 * 1024);
      for (let i = 0; i < 100_000; i++) r.emit({ type: 'log', runId: 'rx', stage: 'build', at: at(), lines: [`line ${i} ${'x'.repeat(40)}`] });
      r.emit({ type: 'stage.finished', runId: 'rx', stage: 'build', status: 'succeeded', at: at() });
      await r.flush();
      const entries = (await redis.xrange(`${prefix}:events`, '-', '+')) as [string, string[]][];
      const lines = entries.map(([, f]) => JSON.parse(f[1]!)).filter((e) => e.type === 'log').flatMap((e) => e.lines as string[]);
      const bytes = lines.reduce((n, l) => n + l.length + 1, 0);
      expect(bytes).toBeLessThan(22 * 1024);
      expect(lines[0]).toMatch(/^line 0 /);
      expect(lines[lines.length - 1]).toMatch(/^line 99999 /);
      const marker = lines.find((l) => l.startsWith('[…'))!;
      expect(marker).toMatch(/^\[… \d+ lines \(\d+\.\d MB\) left out: logs keep 20\.0 KB per run/);
      const omitted = Number(/\[… (\d+) lines/.exec(marker)![1]);
      expect(omitted + lines.length - 1).toBe(100_000);
    } finally {
      await redis.del(`${prefix}:events`);
      redis.disconnect();
    }
  });

  it('a build printing 50 MB: the run succeeds, the stored log stays within the limit; old images are pruned', async () => {
    const registry = await startRegistry({ auth: true });
    const repo = await createSiteRepo();
    const image = `${registry.host}/${uniqueName('loud')}`;
    const config = testConfig({
      registry: { host: registry.host, username: registry.username, password: registry.password },
      // The classic builder: BuildKit would clip this step's output itself (200 KiB/s, see
      // docs/docker-notes.md), and the deployer's own log bound is what is tested here.
      pipelines: [{ name: 'loud', repo: 'acme/loud', url: repo.url, image, tag: 'live', services: [], build: { builder: 'classic' } }],
    });
    (config.pipelines[0]!.retention as { logBytes: number; images: number }).logBytes = 1024 * 1024;
    (config.pipelines[0]!.retention as { logBytes: number; images: number }).images = 1;
    const daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    try {
      const files = siteFiles('loud\n');
      files.Dockerfile = files.Dockerfile!.replace('COPY www /www', `COPY www /www\nRUN ["/bin/sh","-c","i=0; while [ $i -lt 500000 ]; do echo \\"build output line $i ................................................................................\\"; i=$((i+1)); done; echo LAST-LINE"]`);
      const rss0 = process.memoryUsage().rss;
      const run = await waitForRun(daemon.url!, (await deliver(daemon.url!, pushPayload('acme/loud', 'main', await repo.commit(files, 'loud')))).body.runs[0], 300_000);
      const rss1 = process.memoryUsage().rss;
      expect(run.status).toBe('succeeded');
      const log = await runLog(daemon.url!, run.id);
      expect(log.length).toBeLessThan(1.1 * 1024 * 1024);
      expect(log).toMatch(/\[… \d+ lines \([\d.]+ MB\) left out/);
      expect(log).toContain('LAST-LINE');
      console.log(`50 MB build log: stored ${(log.length / 1024 / 1024).toFixed(2)} MB; deployer process RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(rss1 / 2 ** 20).toFixed(0)} MB`);

      // A second build: with images: 1 the first build's image leaves the build host.
      const second = await waitForRun(daemon.url!, (await deliver(daemon.url!, pushPayload('acme/loud', 'main', await repo.commit(siteFiles('quiet\n'), 'quiet')))).body.runs[0]);
      expect(second.status).toBe('succeeded');
      // Pruning happens right after the outcome is reported.
      const until = Date.now() + 20_000;
      while (!/removed 1 old image\(s\) of/.test(await runLog(daemon.url!, second.id)) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      expect(await runLog(daemon.url!, second.id)).toMatch(/removed 1 old image\(s\) of/);
      const left = await new Docker().listImages({ filters: { reference: [image] } });
      expect(left.flatMap((i) => i.RepoTags ?? []).sort()).toEqual([`${image}:${second.commit}`, `${image}:live`].sort());
    } finally {
      await daemon.close();
      await disposeQueues(config);
      for (const i of await new Docker().listImages({ filters: { reference: [image] } })) await new Docker().getImage(i.Id).remove({ force: true }).catch(() => undefined);
      await registry.stop();
      await repo.cleanup();
    }
  });
});

