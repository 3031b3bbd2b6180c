import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/pipeline/events.ts';
import { parseRunEvent } from '../../src/pipeline/events.ts';
import { applyEvent, newRunState, type LifecycleEvent, type RunState } from '../../src/pipeline/lifecycle.ts';

const AT = '2025-01-01T00:00:00Z';
const queued = () => newRunState({ commit: null, at: AT });
const result = { service: 'www', outcome: 'succeeded' as const, previousImage: null, image: 'x', taskErrors: [], message: 'converged' };

/** Applies events in turn; throws if one is not applied. */
function apply(state: RunState, ...events: LifecycleEvent[]): RunState {
  for (const e of events) {
    const v = applyEvent(state, e);
    if (!v.applied) throw new Error(`${e.type}: ${v.why} ${v.detail}`);
    state = v.run;
  }
  return state;
}

/** Stamps events as one execution's reporter does. */
function execution(exec: string, from = 1) {
  let seq = from - 1;
  return <E extends RunEvent>(e: E): E => ({ ...e, exec, seq: ++seq });
}

const started = (attempt = 1, worker = 'w1'): RunEvent => ({ type: 'run.started', runId: 'r', at: AT, worker, attempt });
const log = (line: string): RunEvent => ({ type: 'log', runId: 'r', stage: 'build', at: AT, lines: [line] });
const finished = (status: RunEvent & { type: 'run.finished' } extends { status: infer S } ? S : never = 'succeeded'): RunEvent => ({ type: 'run.finished', runId: 'r', status, at: AT });

/** Every kind of event a worker sends, for "late events change nothing". */
const everyKind = (): RunEvent[] => [
  started(3),
  { type: 'run.parked', runId: 'r', at: AT, reason: 'shutdown' },
  { type: 'run.handoff', runId: 'r', at: AT, reason: 'no manager' },
  { type: 'run.commit', runId: 'r', commit: 'c'.repeat(40), subject: 's', author: 'a' },
  { type: 'stage.started', runId: 'r', stage: 'deploy', at: AT },
  { type: 'stage.finished', runId: 'r', stage: 'deploy', status: 'succeeded', at: AT },
  log('late line'),
  { type: 'image', runId: 'r', ref: 'img', digest: 'sha256:1' },
  { type: 'service.result', runId: 'r', at: AT, result },
  { type: 'deployed', runId: 'r', service: 'www', image: 'img', digest: 'sha256:1', commit: 'c', at: AT },
  finished('failed'),
];

describe('run lifecycle: the normal path', () => {
  it('queued → running → stages → succeeded, with the records each event adds', () => {
    const x = execution('e1');
    let s = apply(queued(), x(started()));
    expect(s).toMatchObject({ status: 'running', attempts: 1, worker: 'w1', exec: 'e1', seq: 1, startedAt: AT });
    const v = applyEvent(s, x(log('hello')));
    expect(v).toMatchObject({ applied: true, records: [{ kind: 'log', stage: 'build', lines: ['hello'] }] });
    s = apply(
      s,
      x({ type: 'run.commit', runId: 'r', commit: 'c'.repeat(40), subject: 'subj', author: 'auth' }),
      x({ type: 'stage.started', runId: 'r', stage: 'fetch', at: AT }),
      x({ type: 'stage.finished', runId: 'r', stage: 'fetch', status: 'succeeded', at: AT }),
      x({ type: 'image', runId: 'r', ref: 'img', digest: 'sha256:1' }),
    );
    expect(applyEvent(s, x({ type: 'service.result', runId: 'r', at: AT, result }))).toMatchObject({ records: [{ kind: 'service.result' }] });
    expect(applyEvent(s, x({ type: 'deployed', runId: 'r', service: 'www', image: 'img', digest: 'sha256:1', commit: 'c', at: AT }))).toMatchObject({ records: [{ kind: 'deployment', service: 'www' }] });
    s = apply(s, x(finished()));
    expect(s).toMatchObject({ status: 'succeeded', finishedBy: 'worker', commit: 'c'.repeat(40), subject: 'subj', image: { ref: 'img' } });
    // What the worker did not report is closed: never reached → skipped.
    expect(s.stages).toMatchObject({ fetch: { status: 'succeeded' }, build: { status: 'skipped' }, deploy: { status: 'skipped' } });
  });

  it('an empty log event changes nothing but is accepted', () => {
    const s = apply(queued(), started());
    expect(applyEvent(s, { type: 'log', runId: 'r', stage: null, at: AT, lines: [] })).toMatchObject({ applied: true, records: [] });
  });

  it('a run superseded at birth is finished, its stages skipped', () => {
    const s = newRunState({ commit: 'a', at: AT, supersededBy: 'r9' });
    expect(s).toMatchObject({ status: 'superseded', supersededBy: 'r9', error: 'superseded by r9', finishedBy: 'store', finishedAt: AT });
    expect(Object.values(s.stages).map((x) => x.status)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
  });
});

describe('run lifecycle: exactly once', () => {
  it('an event of the holding execution that was applied before is a duplicate, whatever its kind', () => {
    const x = execution('e1');
    const events = [x(started()), x(log('one')), x({ type: 'stage.started', runId: 'r', stage: 'fetch', at: AT })];
    const s = apply(queued(), ...events);
    for (const e of events) expect(applyEvent(s, e)).toMatchObject({ applied: false, why: 'duplicate' });
  });

  it('events of an execution that no longer holds the run are stale', () => {
    const old = execution('e1');
    const s1 = apply(queued(), old(started(1)));
    const fresh = execution('e2');
    const s2 = apply(s1, fresh(started(2, 'w2')));
    expect(s2).toMatchObject({ exec: 'e2', attempts: 2, worker: 'w2', seq: 1 });
    expect(applyEvent(s2, old(log('zombie line')))).toMatchObject({ applied: false, why: 'stale' });
    expect(applyEvent(s2, old(finished()))).toMatchObject({ applied: false, why: 'stale' });
  });

  it('a second start from the same execution is refused', () => {
    const x = execution('e1');
    const s = apply(queued(), x(started()));
    expect(applyEvent(s, x(started()))).toMatchObject({ applied: false, why: 'refused' });
  });

  it('unstamped events (an older worker) are judged by the state alone', () => {
    const s = apply(queued(), started(), log('a'), log('a'));
    expect(s.exec).toBeNull();
  });
});

describe('run lifecycle: late events change nothing', () => {
  it('after the worker finished the run: every kind of event is refused, except its own last log lines', () => {
    const x = execution('e1');
    const done = apply(queued(), x(started()), x(finished()));
    for (const e of everyKind()) {
      const v = applyEvent(done, x(e));
      if (e.type === 'log') expect(v).toMatchObject({ applied: true, records: [{ kind: 'log', lines: ['late line'] }] });
      else expect(v, e.type).toMatchObject({ applied: false });
    }
    // …and only from the execution that finished it.
    expect(applyEvent(done, execution('e2', 50)(log('from elsewhere')))).toMatchObject({ applied: false, why: 'stale' });
    expect(applyEvent(done, log('unstamped'))).toMatchObject({ applied: false, why: 'refused' });
  });

  it('after the store finished the run (cancelled while waiting): every kind of event is refused', () => {
    const cancelled = apply(queued(), { type: 'store.finished', runId: 'r', status: 'cancelled', at: AT, error: 'cancelled by admin' });
    expect(cancelled).toMatchObject({ status: 'cancelled', finishedBy: 'store' });
    for (const e of everyKind()) expect(applyEvent(cancelled, execution('e1')(e)), e.type).toMatchObject({ applied: false });
    for (const e of everyKind()) expect(applyEvent(cancelled, e), e.type).toMatchObject({ applied: false });
  });

  it('a queued run accepts only a start or a finish', () => {
    for (const e of everyKind().filter((e) => e.type !== 'run.started' && e.type !== 'run.finished')) {
      expect(applyEvent(queued(), e), e.type).toMatchObject({ applied: false, why: 'refused' });
    }
  });
});

describe('run lifecycle: retry, park, hand-off, store-side finish', () => {
  it('retry: a higher attempt while running starts over (stages reset, a log line says why)', () => {
    const s1 = apply(queued(), started(1), { type: 'stage.started', runId: 'r', stage: 'build', at: AT });
    const v = applyEvent(s1, started(2, 'w2'));
    expect(v).toMatchObject({ applied: true, run: { status: 'running', attempts: 2, worker: 'w2' }, records: [{ kind: 'log', lines: ['attempt 2 on w2: the previous attempt was interrupted; starting over'] }] });
    if (v.applied) expect(v.run.stages.build.status).toBe('pending');
    expect(applyEvent(s1, started(1, 'w2'))).toMatchObject({ applied: false, why: 'refused' });
  });

  it('park: running → queued with stages reset; the next start counts an attempt', () => {
    const s = apply(queued(), started(1), { type: 'stage.started', runId: 'r', stage: 'fetch', at: AT }, { type: 'run.parked', runId: 'r', at: AT, reason: 'the worker is shutting down' });
    expect(s).toMatchObject({ status: 'queued', worker: null, exec: null, startedAt: null });
    expect(s.stages.fetch.status).toBe('pending');
    expect(apply(s, started(1))).toMatchObject({ status: 'running', attempts: 2 });
    expect(applyEvent(queued(), { type: 'run.parked', runId: 'r', at: AT, reason: 'x' })).toMatchObject({ applied: false });
  });

  it('hand-off: the build execution lets go; a deploy execution takes over; the earlier stages stand', () => {
    const b = execution('build');
    const built = apply(queued(), b(started()), b({ type: 'stage.started', runId: 'r', stage: 'push', at: AT }), b({ type: 'stage.finished', runId: 'r', stage: 'push', status: 'succeeded', at: AT }));
    const handed = apply(built, b({ type: 'run.handoff', runId: 'r', at: AT, reason: 'no manager here' }));
    expect(handed).toMatchObject({ status: 'running', exec: null, handoffAt: AT });
    expect(applyEvent(handed, b({ type: 'run.handoff', runId: 'r', at: AT, reason: 'again' }))).toMatchObject({ applied: false });
    const d = execution('deploy');
    const taken = apply(handed, d({ type: 'run.started', runId: 'r', at: AT, worker: 'manager', attempt: 1, phase: 'deploy' }));
    expect(taken).toMatchObject({ exec: 'deploy', worker: 'manager', handoffAt: null, stages: { push: { status: 'succeeded' }, deploy: { status: 'pending' } } });
    expect(apply(taken, d(finished()))).toMatchObject({ status: 'succeeded', worker: 'manager' });
  });

  it('hand-off: the deploy may start before the hand-off is heard; the hand-off is then stale', () => {
    const b = execution('build');
    const built = apply(queued(), b(started()));
    const d = execution('deploy');
    const taken = apply(built, d({ type: 'run.started', runId: 'r', at: AT, worker: 'manager', attempt: 1, phase: 'deploy' }));
    expect(applyEvent(taken, b({ type: 'run.handoff', runId: 'r', at: AT, reason: 'late' }))).toMatchObject({ applied: false, why: 'stale' });
    // An older attempt's deploy is a straggler; a deploy cannot start a finished or waiting run.
    const retried = apply(taken, execution('deploy2')({ type: 'run.started', runId: 'r', at: AT, worker: 'm2', attempt: 2, phase: 'deploy' }));
    expect(applyEvent(retried, execution('deploy3')({ type: 'run.started', runId: 'r', at: AT, worker: 'm3', attempt: 1, phase: 'deploy' }))).toMatchObject({ applied: false, why: 'refused' });
    expect(applyEvent(queued(), { type: 'run.started', runId: 'r', at: AT, worker: 'm', attempt: 1, phase: 'deploy' })).toMatchObject({ applied: false });
  });

  it('store-side finish: a waiting or running run ends; stages still running are cancelled, the rest skipped', () => {
    const running = apply(queued(), started(), { type: 'stage.started', runId: 'r', stage: 'fetch', at: AT });
    const s = apply(running, { type: 'store.finished', runId: 'r', status: 'failed', at: AT, error: 'interrupted: its job is no longer in the queue' });
    expect(s).toMatchObject({ status: 'failed', error: 'interrupted: its job is no longer in the queue', finishedBy: 'store', stages: { fetch: { status: 'cancelled' }, build: { status: 'skipped' } } });
    expect(apply(queued(), { type: 'store.finished', runId: 'r', status: 'superseded', at: AT, error: 'superseded by r2', supersededBy: 'r2' })).toMatchObject({ supersededBy: 'r2' });
    expect(applyEvent(s, { type: 'store.finished', runId: 'r', status: 'cancelled', at: AT, error: 'x' })).toMatchObject({ applied: false, why: 'refused' });
  });

  it('a worker may end a run it never started (a newer commit was deployed meanwhile)', () => {
    const x = execution('e9');
    const s = apply(queued(), x({ type: 'run.finished', runId: 'r', status: 'superseded', at: AT, supersededBy: 'r2', error: 'superseded by r2' }));
    expect(s).toMatchObject({ status: 'superseded', supersededBy: 'r2', exec: 'e9', seq: 1 });
  });
});

describe('run lifecycle: refusals', () => {
  it('refuses illegal steps', () => {
    const running = apply(queued(), started());
    expect(applyEvent(queued(), finished('succeeded'))).toMatchObject({ applied: false, why: 'refused' }); // queued cannot succeed
    expect(applyEvent(running, finished('running'))).toMatchObject({ applied: false, detail: 'running is not an end state' });
    expect(applyEvent(running, { type: 'stage.finished', runId: 'r', stage: 'fetch', status: 'succeeded', at: AT })).toMatchObject({ applied: false, detail: 'stage fetch cannot go from pending to succeeded' });
    expect(applyEvent(running, { type: 'stage.started', runId: 'r', stage: 'nope' as never, at: AT })).toMatchObject({ applied: false });
    const withCommit = apply(running, { type: 'run.commit', runId: 'r', commit: 'a', subject: 's', author: 'x' });
    expect(applyEvent(withCommit, { type: 'run.commit', runId: 'r', commit: 'b', subject: 's', author: 'x' })).toMatchObject({ applied: false, detail: 'commit b is not the run\'s a' });
    // A resume reports the same commit without subject: what was known stays.
    expect(apply(withCommit, { type: 'run.commit', runId: 'r', commit: 'a', subject: '', author: '' })).toMatchObject({ subject: 's', author: 'x' });
    expect(applyEvent(running, { type: 'mystery', runId: 'r' } as never)).toMatchObject({ applied: false, detail: 'unknown event type mystery' });
  });
});

describe('parseRunEvent', () => {
  it('accepts what workers send and says what is wrong with anything else', () => {
    expect(parseRunEvent({ type: 'log', runId: 'r', stage: null, at: AT, lines: ['a'], exec: 'e', seq: 3 })).toMatchObject({ type: 'log' });
    expect(parseRunEvent({ type: 'service.result', runId: 'r', at: AT, result })).toMatchObject({ type: 'service.result' });
    expect(parseRunEvent(null)).toBe('not an object');
    expect(parseRunEvent({ type: 'boom' })).toBe('unknown event type "boom"');
    expect(parseRunEvent({ type: 'log', runId: 'r', stage: 'build', at: AT, lines: [1] })).toBe('log: field lines is missing or malformed');
    expect(parseRunEvent({ type: 'run.finished', runId: 'r', status: 'exploded', at: AT })).toBe('run.finished: field status is missing or malformed');
    expect(parseRunEvent({ type: 'stage.finished', runId: 'r', stage: 'build', status: 'meh', at: AT })).toBe('stage.finished: field status is missing or malformed');
    expect(parseRunEvent({ type: 'stage.started', runId: 'r', stage: 'lint', at: AT })).toBe('stage.started: field stage is missing or malformed');
    expect(parseRunEvent({ type: 'service.result', runId: 'r', at: AT, result: {} })).toBe('service.result: field result is missing or malformed');
    expect(parseRunEvent({ type: 'run.finished', runId: 'r', status: 'failed', at: AT, error: 3 })).toBe('run.finished: field error is missing or malformed');
    expect(parseRunEvent({ type: 'image', runId: 'r', ref: 'x', digest: 'y', exec: 1 })).toBe('image: field exec is malformed');
    expect(parseRunEvent({ type: 'image', runId: 'r', ref: 'x', digest: 'y', seq: 1.5 })).toBe('image: field seq is malformed');
  });
});

describe('parseRunEvent: odd shapes', () => {
  it('a type that is not a string is unknown', () => {
    expect(parseRunEvent({ type: 5 })).toBe('unknown event type 5');
  });
});
