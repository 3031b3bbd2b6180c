import type { DatabaseSync } from 'node:sqlite';
import { beforeEach, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/pipeline/events.ts';
import type { LifecycleEvent } from '../../src/pipeline/lifecycle.ts';
import { toStreamEntry } from '../../src/queue/event-bus.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore, type StreamEntry } from '../../src/store/run-store.ts';

/**
 * The store applying worker events (real SQLite, in memory): a batch applied in one
 * transaction with how far its stream got, exactly once, poison set aside. The
 * real-process version (a store owner killed between applying and acknowledging) is
 * test/integration/exactly-once.test.ts.
 */
const AT = '2025-01-01T00:00:00Z';
const STREAM = 'test:events:store';
const count = (db: DatabaseSync, table: string, where = '1 = 1') => Number((db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`).get() as { n: number }).n);

/** Stream entries for `events`, as the consumer reads them: ids "<ms>-<n>", stamped by one execution. */
function entries(events: RunEvent[], opts: { from?: number; exec?: string; seqFrom?: number } = {}): StreamEntry[] {
  let seq = (opts.seqFrom ?? 1) - 1;
  return events.map((e, i) => toStreamEntry(`${1000 + (opts.from ?? 0) + i}-0`, ['e', JSON.stringify({ ...e, exec: opts.exec ?? 'exec-1', seq: ++seq })]));
}

/** A whole successful run with two services, as a worker reports it. */
function fullRun(runId: string): RunEvent[] {
  const result = (service: string) => ({ service, outcome: 'succeeded' as const, previousImage: 'old', image: 'new', taskErrors: [], message: 'converged' });
  return [
    { type: 'run.started', runId, at: AT, worker: 'w1', attempt: 1 },
    { type: 'stage.started', runId, stage: 'fetch', at: AT },
    { type: 'log', runId, stage: 'fetch', at: AT, lines: ['git fetch', 'fetched'] },
    { type: 'run.commit', runId, commit: 'c'.repeat(40), subject: 'subject', author: 'author' },
    { type: 'stage.finished', runId, stage: 'fetch', status: 'succeeded', at: AT },
    { type: 'stage.started', runId, stage: 'deploy', at: AT },
    { type: 'image', runId, ref: 'img:live@sha256:1', digest: 'sha256:1' },
    { type: 'service.result', runId, at: AT, result: result('a') },
    { type: 'service.result', runId, at: AT, result: result('b') },
    { type: 'deployed', runId, service: 'a', image: 'img:live@sha256:1', digest: 'sha256:1', commit: 'c'.repeat(40), at: AT },
    { type: 'deployed', runId, service: 'b', image: 'img:live@sha256:1', digest: 'sha256:1', commit: 'c'.repeat(40), at: AT },
    { type: 'log', runId, stage: 'deploy', at: AT, lines: ['converged'] },
    { type: 'stage.finished', runId, stage: 'deploy', status: 'succeeded', at: AT },
    { type: 'run.finished', runId, status: 'succeeded', at: AT },
  ];
}

describe('applying worker events (real SQLite)', () => {
  let db: DatabaseSync;
  let store: RunStore;
  let runId: string;
  const applied: LifecycleEvent[] = [];

  beforeEach(() => {
    db = openDatabase(':memory:');
    store = new RunStore(db);
    applied.length = 0;
    store.onApplied((events) => applied.push(...events));
    runId = store.createRuns([{ pipeline: 'site', trigger: 'push', commit: null }])[0]!.id;
  });

  const snapshot = () => ({
    chunks: count(db, 'log_chunks'),
    results: count(db, 'service_deploys'),
    deployments: count(db, 'deployments'),
    run: store.getRun(runId),
  });

  it('a batch applied twice (read again after a crash before its acknowledgement) changes nothing the second time', () => {
    const batch = entries(fullRun(runId));
    const first = store.applyBatch(STREAM, batch);
    expect(first).toMatchObject({ alreadyApplied: 0, ignored: [], setAside: [] });
    expect(first.applied).toHaveLength(batch.length);
    expect(first.done).toEqual(batch.map((e) => e.id));
    const before = snapshot();
    expect(before).toMatchObject({ chunks: 2, results: 2, deployments: 2, run: { status: 'succeeded', commit: 'c'.repeat(40) } });
    expect(store.lastAppliedEvent(STREAM)).toBe(batch.at(-1)!.id);

    const again = store.applyBatch(STREAM, batch);
    expect(again).toMatchObject({ applied: [], alreadyApplied: batch.length, done: batch.map((e) => e.id) });
    expect(snapshot()).toEqual(before);
    expect(store.currentDeployments('site').map((d) => d.service).sort()).toEqual(['a', 'b']);
  });

  it('the same events sent twice under new stream ids (a resent XADD) are applied once, by their stamps', () => {
    const events = fullRun(runId);
    store.applyBatch(STREAM, entries(events.slice(0, 9)));
    const before = snapshot();
    // The reporter resent what it was not sure Redis had taken: new ids, same stamps.
    const resent = store.applyBatch(STREAM, entries(events.slice(0, 9), { from: 100 }));
    expect(resent.applied).toEqual([]);
    expect(resent.ignored.map((i) => i.why)).toEqual(Array(9).fill('duplicate'));
    expect(snapshot()).toEqual(before);
    // …and the rest still applies.
    store.applyBatch(STREAM, entries(events.slice(9), { from: 200, seqFrom: 10 }));
    expect(snapshot()).toMatchObject({ chunks: 2, results: 2, deployments: 2, run: { status: 'succeeded' } });
  });

  it('a batch replayed from the middle applies only its unseen tail', () => {
    const batch = entries(fullRun(runId));
    store.applyBatch(STREAM, batch.slice(0, 5));
    const out = store.applyBatch(STREAM, batch);
    expect(out.alreadyApplied).toBe(5);
    expect(out.applied).toHaveLength(batch.length - 5);
    expect(snapshot()).toMatchObject({ chunks: 2, results: 2, deployments: 2 });
  });

  it('a poison event (its application fails every time) is set aside after 3 tries; later events are applied', () => {
    // A real failure inside SQLite, for one event only: as a bug or a corrupt row would.
    db.exec("CREATE TRIGGER poison BEFORE INSERT ON log_chunks WHEN NEW.text LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END");
    const batch = entries([
      { type: 'run.started', runId, at: AT, worker: 'w1', attempt: 1 },
      { type: 'log', runId, stage: 'build', at: AT, lines: ['before'] },
      { type: 'log', runId, stage: 'build', at: AT, lines: ['POISON'] },
      { type: 'log', runId, stage: 'build', at: AT, lines: ['after'] },
      { type: 'run.finished', runId, status: 'failed', at: AT, error: 'build: failed' },
    ]);
    const first = store.applyBatch(STREAM, batch);
    expect(first.done).toEqual(batch.slice(0, 2).map((e) => e.id));
    expect(first.retry).toMatchObject({ id: batch[2]!.id, attempts: 1 });
    expect(store.getRun(runId)!.status).toBe('running');
    // The consumer reads what it did not acknowledge again: the poison and what follows.
    const second = store.applyBatch(STREAM, batch.slice(2));
    expect(second.retry).toMatchObject({ attempts: 2 });
    const third = store.applyBatch(STREAM, batch.slice(2));
    expect(third.retry).toBeUndefined();
    expect(third.setAside).toMatchObject([{ id: batch[2]!.id, runId, error: 'disk I/O error', attempts: 3 }]);
    expect(third.done).toEqual(batch.slice(2).map((e) => e.id));
    expect(third.applied.map((e) => e.type)).toEqual(['log', 'run.finished']);
    const run = store.getRun(runId)!;
    expect(run).toMatchObject({ status: 'failed', setAsideEvents: 1 });
    const log = [...store.logChunks(runId)].join('');
    expect(log).toContain('before\n');
    expect(log).toContain('after\n');
    expect(log).toMatch(/a report about this run could not be applied and was set aside \(stream entry 1002-0\): disk I\/O error/);
    expect(count(db, 'set_aside_events')).toBe(1);
    expect(count(db, 'event_failures')).toBe(0);
    expect(store.setAsideEvents()).toBe(1);
  });

  it('an entry that is not an event is set aside at once and does not stop the batch', () => {
    const good = entries([{ type: 'run.started', runId, at: AT, worker: 'w1', attempt: 1 }]);
    const bad: StreamEntry[] = [toStreamEntry('2000-0', ['e', '{not json']), toStreamEntry('2000-1', ['e', JSON.stringify({ type: 'log', runId, lines: 'x' })])];
    const out = store.applyBatch(STREAM, [...bad, ...good.map((g) => ({ ...g, id: '2000-2' }))]);
    expect(out.setAside.map((s) => [s.id, s.error, s.runId])).toEqual([['2000-0', 'not valid JSON', null], ['2000-1', 'log: field stage is missing or malformed', runId]]);
    expect(out.applied.map((e) => e.type)).toEqual(['run.started']);
    expect(store.getRun(runId)).toMatchObject({ status: 'running', setAsideEvents: 1 });
  });

  it('late events change nothing: after a cancel by the store, no log, image, result or deployment lands', () => {
    expect(store.finish(runId, 'cancelled', 'cancelled by admin')).toBe(true);
    expect(applied.map((e) => e.type)).toEqual(['store.finished']);
    const out = store.applyBatch(STREAM, entries(fullRun(runId)));
    expect(out.applied).toEqual([]);
    expect(new Set(out.ignored.map((i) => i.why))).toEqual(new Set(['refused', 'stale']));
    expect(snapshot()).toMatchObject({ chunks: 0, results: 0, deployments: 0, run: { status: 'cancelled', error: 'cancelled by admin', image: null, commit: null } });
    expect(store.finish(runId, 'failed', 'again')).toBe(false);
  });

  it('events about a run the store does not know are ignored', () => {
    const out = store.applyBatch(STREAM, entries([{ type: 'log', runId: 'rnope', stage: null, at: AT, lines: ['x'] }]));
    expect(out.ignored).toMatchObject([{ why: 'no_run' }]);
    expect(out.done).toHaveLength(1);
  });

  it('listeners hear exactly the applied events; a failing listener changes nothing', () => {
    store.onApplied(() => {
      throw new Error('listener bug');
    });
    const batch = entries(fullRun(runId).slice(0, 3));
    store.applyBatch(STREAM, batch);
    store.applyBatch(STREAM, batch);
    expect(applied.map((e) => e.type)).toEqual(['run.started', 'stage.started', 'log']);
  });

  it('the store keeps one id for its event stream', () => {
    const again = new RunStore(db);
    expect(again.id).toBe(store.id);
    expect(store.id).toMatch(/^[0-9a-f]{12}$/);
  });

  it('single events (tools, tests) go through the same lifecycle', () => {
    expect(store.apply({ type: 'run.started', runId, at: AT, worker: 'w', attempt: 1 })).toBe(true);
    expect(store.apply({ type: 'run.started', runId, at: AT, worker: 'w', attempt: 1 })).toBe(false);
    expect(store.apply({ type: 'log', runId: 'rnope', stage: null, at: AT, lines: ['x'] })).toBe(false);
  });
});
