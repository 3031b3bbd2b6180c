import { describe, expect, it } from 'vitest';
import type { PipelineConfig } from '../../src/config/types.ts';
import { executeRun, type RunCheckpoint, type RunJob } from '../../src/pipeline/runner.ts';
import { COMMIT, DIGEST, fakePipeline, FakeBuilder, FakeChecks, FakeDeployer, FakePusher, FakeSource, MemoryCheckpoints, MemoryFleetJournal, MemoryReporter, replay } from '../fakes/ports.ts';

/**
 * The deploy stage's decisions for verified deploys (issue #15), through in-memory
 * ports: when edge verification or the probe roll a deploy back, what the run reports,
 * and the fleet journal bringing back services a killed attempt had updated. Each run's
 * events are replayed through the lifecycle, as the store applies them.
 */
const IMAGE = `127.0.0.1:5000/site:live@${DIGEST}`;
const PREVIOUS = 'a'.repeat(40);
const verify = { url: 'http://edge.test/rev', expect: { header: 'X-Revision' }, timeoutMs: 1000, intervalMs: 100, requestTimeoutMs: 500 };
const probe = (maxFailed?: number) => ({ url: 'http://edge.test/', ratePerSecond: 20, maxFailed, requestTimeoutMs: 500 });

function setup(opts: { pipeline?: Partial<PipelineConfig>; job?: Partial<RunJob>; checkpoint?: RunCheckpoint; journal?: MemoryFleetJournal | null } = {}) {
  const h = {
    deployer: new FakeDeployer(),
    checks: new FakeChecks(),
    checkpoints: new MemoryCheckpoints(),
    reporter: new MemoryReporter(),
    journal: opts.journal === null ? undefined : (opts.journal ?? new MemoryFleetJournal()),
    job: { runId: 'r1', pipeline: fakePipeline(opts.pipeline), commit: COMMIT, worker: 'w', attempt: 1, instance: 'test', recordedCommit: PREVIOUS, ...opts.job } as RunJob,
  };
  if (opts.checkpoint) h.checkpoints.saved.set('r1', opts.checkpoint);
  const run = () =>
    executeRun(h.job, {
      ports: { source: new FakeSource(), builder: new FakeBuilder(), pusher: new FakePusher(), deployer: h.deployer, checks: h.checks },
      report: h.reporter,
      stop: new AbortController().signal,
      checkpoints: h.checkpoints,
      ...(h.journal ? { journal: h.journal } : {}),
      retryDelaysMs: [1],
    });
  return { ...h, run };
}

const checksEvents = (r: MemoryReporter) => r.events.filter((e) => e.type === 'deploy.checks');

describe('deploy stage: edge verification and the probe', () => {
  it('verified at the edge: succeeds, with verify and probe on the run', async () => {
    const h = setup({ pipeline: { verify, probe: probe(0) } });
    expect((await h.run()).status).toBe('succeeded');
    const [c] = checksEvents(h.reporter);
    expect(c).toMatchObject({ verify: { ok: true, commit: COMMIT }, probe: { sent: 40, failed: 0 } });
    expect(h.deployer.restores).toEqual([]);
    expect(h.reporter.events.filter((e) => e.type === 'deployed')).toHaveLength(1);
    expect(replay(h.reporter.events).status).toBe('succeeded');
  });

  it('not verified: every service is put back, the previous commit is verified, the run ends rolled_back and records nothing deployed', async () => {
    const h = setup({ pipeline: { services: ['a', 'b'], targets: ['a', 'b'].map((service) => ({ service, docker: { host: 'unix:///x' } })), verify } });
    h.checks.verifyOk = false;
    const outcome = await h.run();
    expect(outcome.status).toBe('rolled_back');
    expect(outcome.error).toBe(`deploy: rolled back: not verified at the edge: served by the proxy: old revision ${PREVIOUS.slice(0, 12)} (X-Revision); the edge serves ${PREVIOUS.slice(0, 12)} again`);
    // Newest first, each to what it ran before.
    expect(h.deployer.restores.map((r) => [r.service, r.image])).toEqual([['b', 'old/b:1'], ['a', 'old/a:1']]);
    expect(h.checks.previousAsked).toEqual([PREVIOUS]);
    expect(checksEvents(h.reporter)).toMatchObject([{ verify: { ok: false } }, { verifyPrevious: { ok: true, commit: PREVIOUS } }]);
    expect(h.reporter.events.filter((e) => e.type === 'deployed')).toEqual([]);
    const state = replay(h.reporter.events);
    expect(state.status).toBe('rolled_back');
    expect(state.stages.deploy.status).toBe('failed');
  });

  it('says so when the previous revision does not show at the edge either', async () => {
    const h = setup({ pipeline: { verify } });
    h.checks.verifyOk = false;
    h.checks.previousOk = false;
    const outcome = await h.run();
    expect(outcome.status).toBe('rolled_back');
    expect(outcome.error).toMatch(/the edge does NOT serve a{12} again/);
  });

  it('with no recorded deployment the edge is not asked after the rollback, and the run says why', async () => {
    const h = setup({ pipeline: { verify }, job: { recordedCommit: undefined } });
    h.checks.verifyOk = false;
    const outcome = await h.run();
    expect(outcome.status).toBe('rolled_back');
    expect(outcome.error).toMatch(/no earlier deployment is recorded/);
    expect(h.checks.previousAsked).toEqual([]);
  });

  it('probe failures over maxFailed roll back; without maxFailed they are only recorded', async () => {
    const strict = setup({ pipeline: { probe: probe(0) } });
    strict.checks.probeFailed = 7;
    const out = await strict.run();
    expect(out.status).toBe('rolled_back');
    expect(out.error).toMatch(/the probe saw 7 of 40 requests fail/);
    expect(strict.deployer.restores.map((r) => r.service)).toEqual(['www']);

    const lenient = setup({ pipeline: { probe: probe(undefined) } });
    lenient.checks.probeFailed = 7;
    expect((await lenient.run()).status).toBe('succeeded');
    expect(checksEvents(lenient.reporter)).toMatchObject([{ probe: { failed: 7 } }]);
  });

  it('a service swarm itself rolled back ends the run rolled_back, probe figures kept', async () => {
    const h = setup({ pipeline: { verify, probe: probe(0) } });
    h.deployer.outcomes.www = 'rolled_back';
    const out = await h.run();
    expect(out.status).toBe('rolled_back');
    expect(out.error).toMatch(/www rolled back/);
    expect(checksEvents(h.reporter)).toMatchObject([{ probe: { sent: 40 } }]);
    expect(checksEvents(h.reporter)[0]).not.toHaveProperty('verify'); // the edge is only asked after a converged rollout
  });
});

describe('deploy stage: the fleet journal across a killed worker', () => {
  const pipeline = { services: ['a', 'b'], targets: ['a', 'b'].map((service) => ({ service, docker: { host: 'unix:///x' } })) };
  // Attempt 1 updated a (from old/a:1) and was killed while b rolled out.
  const killed = async (journal: MemoryFleetJournal) => {
    await journal.begin('r1', 'a', 'old/a:1');
    await journal.mark('r1', 'a', 'updated');
    await journal.begin('r1', 'b', 'old/b:1');
  };
  const checkpoint: RunCheckpoint = { commit: COMMIT, image: IMAGE, digest: DIGEST, servicesDone: ['a'], deployStartedAt: '2025-01-01T00:00:00Z' };

  it('the resumed attempt restores the service the killed one updated, to what it ran before', async () => {
    const journal = new MemoryFleetJournal();
    await killed(journal);
    const h = setup({ pipeline, job: { attempt: 2 }, checkpoint, journal });
    h.deployer.outcomes.b = 'rolled_back';
    h.deployer.previous.a = IMAGE; // what a resumed attempt would read from a's spec now
    const out = await h.run();
    expect(out.status).toBe('rolled_back');
    expect(h.deployer.deploys.map((d) => d.service)).toEqual(['b']);
    expect(h.deployer.restores.map((r) => [r.service, r.image])).toEqual([['a', 'old/a:1']]);
    expect(h.reporter.log()).toContain('rolling a back to old/a:1 so all services serve the same version');
    expect(journal.runs.has('r1')).toBe(false); // cleared with the checkpoint once the run ended
  });

  it('without the journal, the resumed attempt could not know a was updated (the bug the journal fixes)', async () => {
    const h = setup({ pipeline, job: { attempt: 2 }, checkpoint, journal: null });
    h.deployer.outcomes.b = 'rolled_back';
    expect((await h.run()).status).toBe('failed');
    expect(h.deployer.restores).toEqual([]);
  });

  it('journals each service before its update, first record wins', async () => {
    const journal = new MemoryFleetJournal();
    const h = setup({ pipeline, journal });
    h.deployer.outcomes.b = 'failed';
    await h.run();
    // a was restored; b's own failure is its deployer's to handle.
    expect(h.deployer.restores.map((r) => [r.service, r.image])).toEqual([['a', 'old/a:1']]);
  });
});
