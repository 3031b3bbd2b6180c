import { describe, expect, it } from 'vitest';
import { StopRequest } from '../../src/pipeline/cancel.ts';
import { judgeDescent } from '../../src/pipeline/descent.ts';
import { newRunState } from '../../src/pipeline/lifecycle.ts';
import { executeRun, type RunCheckpoint, type RunJob } from '../../src/pipeline/runner.ts';
import type { ServingRecord } from '../../src/pipeline/run-context.ts';
import { DIGEST, fakePipeline, FakeBuilder, FakeDeployer, FakePusher, FakeSource, MemoryCheckpoints, MemoryHandoff, MemoryReporter, replay } from '../fakes/ports.ts';

/**
 * "Never older over newer", decided with git (src/pipeline/descent.ts): the pure rule,
 * and the runner asking it before building and again before deploying, through
 * in-memory ports. History used below: X ← A ← M ← B (B is the branch head), and a
 * side branch X ← S.
 */
const sha = (c: string) => c.repeat(40);
const X = sha('0');
const A = sha('a');
const M = sha('5');
const B = sha('b');
const S = sha('e');
const PARENTS = { [X]: [], [A]: [X], [M]: [A], [B]: [M], [S]: [X] };
const IMAGE = `127.0.0.1:5000/site:live@${DIGEST}`;

function setup(opts: { commit: string; head?: string; remoteHead?: string | Error; serving?: ServingRecord; jobServing?: ServingRecord; job?: Partial<RunJob>; checkpoint?: RunCheckpoint; handoff?: boolean }) {
  const source = new FakeSource();
  source.parents = { ...PARENTS };
  source.head = opts.head ?? B;
  source.remoteHead = opts.remoteHead;
  const h = {
    source,
    builder: new FakeBuilder(),
    pusher: new FakePusher(),
    deployer: new FakeDeployer(),
    checkpoints: new MemoryCheckpoints(),
    reporter: new MemoryReporter(),
    handoff: opts.handoff ? new MemoryHandoff() : undefined,
    stop: new AbortController(),
    /** What the workers recorded as serving (changes while a run goes on, in some tests). */
    now: { serving: opts.serving as ServingRecord | undefined },
    job: {
      runId: 'r9', pipeline: fakePipeline(), commit: opts.commit, worker: 'host-1', attempt: 1, instance: 'deployer-test', trigger: 'push',
      ...(opts.jobServing ? { serving: opts.jobServing } : {}),
      ...opts.job,
    } as RunJob,
  };
  if (opts.checkpoint) h.checkpoints.saved.set('r9', opts.checkpoint);
  const run = () =>
    executeRun(h.job, {
      ports: { source: h.source, builder: h.builder, pusher: h.pusher, deployer: h.deployer },
      report: h.reporter,
      stop: h.stop.signal,
      checkpoints: h.checkpoints,
      serving: { load: async () => h.now.serving },
      ...(h.handoff ? { handoff: h.handoff } : {}),
      retryDelaysMs: [1],
    });
  return { ...h, run };
}

describe('judgeDescent (pure)', () => {
  const serving = { commit: B, runId: 'rB' };
  it('the branch head always deploys, even when it does not descend from what serves (a force-push)', () => {
    expect(judgeDescent({ commit: S, head: S, serving, descends: false })).toMatchObject({ deploy: true, why: 'eeeeeee is the branch head' });
  });
  it('nothing deployed yet: anything deploys', () => {
    expect(judgeDescent({ commit: A, head: B, serving: undefined, descends: undefined }).deploy).toBe(true);
  });
  it('a descendant of what serves deploys though it is not the head', () => {
    expect(judgeDescent({ commit: M, head: B, serving: { commit: A, runId: 'rA' }, descends: true })).toMatchObject({ deploy: true, why: '5555555 descends from aaaaaaa, which serves' });
  });
  it('an ancestor of what serves, not the head: refused, saying why, naming the run that serves', () => {
    expect(judgeDescent({ commit: A, head: B, serving, descends: false })).toEqual({
      deploy: false,
      message: 'aaaaaaa is not a descendant of bbbbbbb, which serves and is not the branch head (bbbbbbb): an older push delivered late or replayed',
      supersededBy: 'rB',
    });
  });
  it('a commit git cannot place is not proven a descendant', () => {
    const v = judgeDescent({ commit: A, head: null, serving, descends: 'unknown' });
    expect(v).toMatchObject({ deploy: false, message: 'aaaaaaa is not a descendant of bbbbbbb, which serves (git does not know one of them): an older push delivered late or replayed' });
  });
  it('before git is asked, a non-head commit with something serving is not yet allowed', () => {
    expect(judgeDescent({ commit: A, head: B, serving, descends: undefined }).deploy).toBe(false);
  });
});

describe('executeRun: the descent check', () => {
  it('a replayed older push (A while B serves) ends superseded after the fetch: nothing built, pushed or deployed', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' } });
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'superseded', supersededBy: 'rB', error: 'aaaaaaa is not a descendant of bbbbbbb, which serves and is not the branch head (bbbbbbb): an older push delivered late or replayed' });
    expect(h.builder.requests).toHaveLength(0);
    expect(h.pusher.tags).toHaveLength(0);
    expect(h.deployer.deploys).toHaveLength(0);
    expect(h.source.ancestryQuestions).toEqual([[B, A]]);
    expect(h.reporter.stages()).toEqual({ fetch: ['running', 'succeeded'], build: ['skipped'], push: ['skipped'], deploy: ['skipped'] });
    expect(h.reporter.log()).toContain('which serves and is not the branch head');
    expect(replay(h.reporter.events, newRunState({ commit: A, at: 'x' }))).toMatchObject({ status: 'superseded', supersededBy: 'rB', error: outcome.error, finishedBy: 'worker' });
    expect(h.source.cleaned).toBe(1); // the work tree still goes
  });

  it('a late delivery (M while B serves) is refused the same way', async () => {
    const h = setup({ commit: M, serving: { commit: B, runId: 'rB' } });
    expect(await h.run()).toMatchObject({ status: 'superseded', error: expect.stringMatching(/^5555555 is not a descendant of bbbbbbb/) });
    expect(h.builder.requests).toHaveLength(0);
  });

  it('the branch head deploys without asking git anything more', async () => {
    const h = setup({ commit: B, serving: { commit: A, runId: 'rA' } });
    expect(await h.run()).toMatchObject({ status: 'succeeded', commit: B });
    expect(h.source.ancestryQuestions).toEqual([]);
    expect(h.reporter.log()).toContain('building: bbbbbbb is the branch head');
  });

  it('a descendant of what serves that is no longer the head still deploys (it is newer than what serves)', async () => {
    const h = setup({ commit: M, serving: { commit: A, runId: 'rA' } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).toContain('5555555 descends from aaaaaaa, which serves');
  });

  it('…and its end names the branch head, so the store deploys the head next (a replayed push must not leave the newer one undeployed)', async () => {
    const h = setup({ commit: M, serving: { commit: A, runId: 'rA' } });
    await h.run();
    expect(h.reporter.events.find((e) => e.type === 'run.finished')).toMatchObject({ status: 'succeeded', branchHead: B });
    expect(h.reporter.log()).toContain('main points at bbbbbbbbbbbb, not at what this run deployed: it is deployed next');
  });

  it('the head itself, a failed run and an unchecked run name no branch head', async () => {
    const head = setup({ commit: B, serving: { commit: A, runId: 'rA' } });
    await head.run();
    const failing = setup({ commit: M, serving: { commit: A, runId: 'rA' } });
    failing.deployer.outcomes.www = 'failed';
    await failing.run();
    const rebuild = setup({ commit: M, serving: { commit: A, runId: 'rA' }, job: { trigger: 'rebuild' } });
    await rebuild.run();
    for (const h of [head, failing, rebuild]) expect(h.reporter.events.find((e) => e.type === 'run.finished')).not.toHaveProperty('branchHead');
  });

  it('without a worker record, what the store said serves (in the job) is used', async () => {
    const h = setup({ commit: A, jobServing: { commit: B, runId: 'rB' } });
    expect((await h.run()).status).toBe('superseded');
  });

  it('the worker record wins over the job (it is newer: written when a deploy finished)', async () => {
    const h = setup({ commit: M, serving: { commit: A, runId: 'rA' }, jobServing: { commit: B, runId: 'rB' } });
    expect((await h.run()).status).toBe('succeeded');
  });

  it('before deploying it checks again: B deployed by another worker while A was building → A is not deployed', async () => {
    // A is the head when fetched; B lands and is deployed elsewhere during A's build.
    const h = setup({ commit: A, head: A, serving: { commit: X, runId: 'rX' }, remoteHead: B });
    h.builder.build = async (req) => {
      h.now.serving = { commit: B, runId: 'rB' };
      h.builder.requests.push(req);
      return { imageId: 'sha256:image' };
    };
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'superseded', supersededBy: 'rB' });
    expect(h.builder.requests).toHaveLength(1);
    expect(h.deployer.deploys).toHaveLength(0);
    expect(h.reporter.stages()).toMatchObject({ push: ['running', 'succeeded'], deploy: ['skipped'] });
    expect(h.reporter.events.some((e) => e.type === 'deployed')).toBe(false);
    replay(h.reporter.events, newRunState({ commit: A, at: 'x' }));
  });

  it('before deploying, a remote that cannot be asked leaves the check to ancestry alone', async () => {
    const h = setup({ commit: M, head: M, serving: { commit: A, runId: 'rA' }, remoteHead: new Error('ls-remote: connection refused') });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).toContain('could not ask where main points (ls-remote: connection refused)');
  });

  it('a commit unknown to git (serving commit force-pushed away) is not proven a descendant', async () => {
    const h = setup({ commit: A, serving: { commit: sha('f'), runId: 'rF' } });
    expect(await h.run()).toMatchObject({ status: 'superseded', error: expect.stringContaining('(git does not know one of them)') });
  });

  it('a git failure during the check fails the run, saying so (it proves nothing either way)', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' } });
    h.source.isAncestor = () => Promise.reject(new Error('git: index.lock exists'));
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'build: could not check that aaaaaaaaaaaa descends from what serves: git: index.lock exists' });
    expect(h.builder.requests).toHaveLength(0);
  });

  it('a cancel during the check cancels the run', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' } });
    h.source.isAncestor = (req) => new Promise((_, reject) => req.signal.addEventListener('abort', () => reject(req.signal.reason)));
    const running = h.run();
    await new Promise((r) => setTimeout(r, 5));
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect(await running).toMatchObject({ status: 'cancelled', error: 'cancelled by admin' });
  });

  it('rollback goes back on purpose: never checked', async () => {
    const image = `127.0.0.1:5000/site:live@sha256:${'a'.repeat(64)}`;
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' }, job: { trigger: 'rollback', image } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.deployer.deploys[0]).toMatchObject({ image });
    expect(h.source.ancestryQuestions).toEqual([]);
  });

  it('a rebuild (asked by hand; it builds the head) is not checked', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' }, job: { trigger: 'rebuild' } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.ancestryQuestions).toEqual([]);
  });

  it('a poll run is checked like a push', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' }, job: { trigger: 'poll' } });
    expect((await h.run()).status).toBe('superseded');
  });

  it('a handed-off deploy is checked by the worker that deploys', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' }, job: { phase: 'deploy' }, checkpoint: { commit: A, image: IMAGE, digest: DIGEST, servicesDone: [] } });
    expect(await h.run()).toMatchObject({ status: 'superseded', supersededBy: 'rB' });
    expect(h.deployer.deploys).toHaveLength(0);
  });

  it('a resumed rollout already in flight is watched, not judged', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'rB' }, job: { attempt: 2 }, checkpoint: { commit: A, image: IMAGE, digest: DIGEST, deployStartedAt: 't', servicesDone: [] } });
    expect((await h.run()).status).toBe('succeeded');
  });

  it('the run that serves is never named as superseding itself', async () => {
    const h = setup({ commit: A, serving: { commit: B, runId: 'r9' } });
    const outcome = await h.run();
    expect(outcome.status).toBe('superseded');
    expect(outcome.supersededBy).toBeUndefined();
  });
});
