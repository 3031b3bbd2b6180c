import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { createLogger } from '../../src/lib/logger.ts';
import type { RunEvent } from '../../src/pipeline/events.ts';
import { toStreamEntry } from '../../src/queue/event-bus.ts';
import { Integrations } from '../../src/report/integrations.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore } from '../../src/store/run-store.ts';
import { testConfig } from '../helpers/config.ts';

/**
 * The reporting observer hangs off RunStore.onApplied (real SQLite, in memory): metrics
 * count each finished run once, notifications are recorded once per receiver and event,
 * however often the same worker events arrive (a store owner that read its stream again
 * after a restart, a duplicate delivery) and whichever path finished the run. The
 * real-engine version is test/integration/reporting-e2e.test.ts.
 */
const AT = '2025-01-01T00:00:00Z';
const STREAM = 'test:events:store';

function stamped(events: RunEvent[], from: number, exec = 'exec-1', seqFrom = 1) {
  return events.map((e, i) => toStreamEntry(`${1000 + from + i}-0`, ['e', JSON.stringify({ ...e, exec, seq: seqFrom + i })]));
}

function run(runId: string, status: 'succeeded' | 'failed'): RunEvent[] {
  return [
    { type: 'run.started', runId, at: AT, worker: 'w1', attempt: 1 },
    { type: 'stage.started', runId, stage: 'fetch', at: AT },
    { type: 'run.commit', runId, commit: 'c'.repeat(40), subject: 'subject', author: 'author' },
    { type: 'stage.finished', runId, stage: 'fetch', status: 'succeeded', at: AT },
    { type: 'log', runId, stage: 'fetch', at: AT, lines: ['fetched'] },
    { type: 'stage.started', runId, stage: 'build', at: AT },
    { type: 'stage.finished', runId, stage: 'build', status, at: '2025-01-01T00:00:02Z', ...(status === 'failed' ? { error: 'RUN exited 1' } : {}) },
    { type: 'run.finished', runId, status, at: '2025-01-01T00:00:03Z', ...(status === 'failed' ? { error: 'build: RUN exited 1' } : {}) },
  ];
}

/** `deployer_runs_total` of pipeline site, by status, as Prometheus would read it. */
async function runsTotal(i: Integrations): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await i.metrics.text()).matchAll(/^deployer_runs_total\{pipeline="site",status="(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('reporting observes applied changes, once each', () => {
  let config: Config;
  let store: RunStore;
  let integrations: Integrations;
  const queued: string[] = [];

  beforeEach(() => {
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    config = testConfig({
      pipelines: [{ name: 'site', repo: 'acme/site', image: '127.0.0.1:5000/site', services: ['www'] }],
      extra: `notify:\n  - { webhook: { url: http://127.0.0.1:9/hook, secret: "${secret}" }, on: [all] }`,
    });
    store = new RunStore(openDatabase(':memory:'));
    integrations = new Integrations({ config, store, driftOf: () => null, log: createLogger('silent') });
    // The report queue's port, in memory: what would be handed to BullMQ.
    queued.length = 0;
    integrations.attach({ enqueueGithub: async () => undefined, enqueueNotification: async (id) => void queued.push(id) });
    store.onApplied((events) => integrations.applied(events));
  });

  afterEach(() => {
    store.close();
    rmSync(dirname(config.dataDir), { recursive: true, force: true });
  });

  const settle = () => new Promise((r) => setImmediate(r));

  it('a run read twice from the stream is counted and announced once', async () => {
    const id = store.createRuns([{ pipeline: 'site', trigger: 'push', commit: null }])[0]!.id;
    const events = run(id, 'failed');
    store.applyBatch(STREAM, stamped(events, 0));
    await settle();
    // The same entries again (a restart before acknowledging), then the same events
    // under new stream ids (a duplicate publish): nothing new is applied.
    const again = store.applyBatch(STREAM, stamped(events, 0));
    expect(again.applied).toHaveLength(0);
    const dup = store.applyBatch(STREAM, stamped(events, 100));
    expect(dup.applied).toHaveLength(0);
    await settle();
    expect(await runsTotal(integrations)).toMatchObject({ failed: 1, succeeded: 0 });
    const notes = store.notifications.ofRun(id);
    expect(notes.map((n) => n.event).sort()).toEqual(['failed', 'started']);
    expect(queued.sort()).toEqual(notes.map((n) => n.id).sort());
    expect(await integrations.metrics.text()).toMatch(/deployer_stage_duration_seconds_count\{pipeline="site",stage="build"\} 1$/m);
  });

  it('the store finishing a run itself is counted once, by the path that finished it', async () => {
    const [a, b] = store.createRuns([
      { pipeline: 'site', trigger: 'push', commit: 'a'.repeat(40) },
      { pipeline: 'site', trigger: 'push', commit: 'b'.repeat(40) },
    ]);
    expect(store.finish(a!.id, 'superseded', `superseded by ${b!.id}`, b!.id)).toBe(true);
    // Finishing it again is refused by the lifecycle: no second notification.
    expect(store.finish(a!.id, 'cancelled', 'cancelled by admin')).toBe(false);
    // A late worker event for the finished run changes nothing either.
    expect(store.apply({ type: 'run.finished', runId: a!.id, status: 'failed', at: AT })).toBe(false);
    await settle();
    expect(await runsTotal(integrations)).toMatchObject({ superseded: 1, cancelled: 0, failed: 0 });
  });

  it('runs recorded superseded at ingest are counted once their batch is kept, not before', async () => {
    const pushes = [1, 2, 3].map((n) => ({ id: `d${n}`, event: 'push', runs: [{ pipeline: 'site', trigger: 'push' as const, commit: String(n).repeat(40) }] }));
    const recorded = store.recordPushes(pushes);
    expect(recorded.superseded).toHaveLength(2);
    await settle();
    expect((await runsTotal(integrations)).superseded).toBe(0);
    store.announceRecorded(recorded);
    await settle();
    expect((await runsTotal(integrations)).superseded).toBe(2);
    // The newest run goes on and succeeds: one success, nothing more for the others.
    store.applyBatch(STREAM, stamped(run(recorded.newest[0]!.id, 'succeeded'), 0));
    await settle();
    expect(await runsTotal(integrations)).toMatchObject({ superseded: 2, succeeded: 1 });
  });
});
