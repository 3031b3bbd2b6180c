import { describe, expect, it } from 'vitest';
import type { PipelineConfig } from '../../src/config/types.ts';
import type { SelfIdentity } from '../../src/pipeline/ports.ts';
import { PermanentError } from '../../src/lib/errors.ts';
import { StopRequest } from '../../src/pipeline/cancel.ts';
import { newRunState } from '../../src/pipeline/lifecycle.ts';
import { endWithoutRunning, executeRun, type RunCheckpoint, type RunJob } from '../../src/pipeline/runner.ts';
import { raceAbort, RETRY_DELAYS_MS } from '../../src/pipeline/stage-runner.ts';
import { buildStage } from '../../src/pipeline/stages.ts';
import { createContext } from '../../src/pipeline/run-context.ts';
import { StageTimeout } from '../../src/pipeline/cancel.ts';
import { COMMIT, DIGEST, fakePipeline, FakeBuilder, FakeDeployer, FakePusher, FakeSelf, FakeSource, MemoryCheckpoints, MemoryHandoff, MemoryReporter, replay, transient, type Step } from '../fakes/ports.ts';

/**
 * Every branch of the runner, through in-memory ports: no Docker, no Redis, no git.
 * Each run's reported events are also replayed through the run lifecycle, as the store
 * applies them, so every sequence the runner produces is one the store accepts.
 */
interface Setup {
  pipeline?: Partial<PipelineConfig>;
  job?: Partial<RunJob>;
  fetch?: Step[];
  build?: Step[];
  push?: Step[];
  handoff?: boolean;
  checkpoint?: RunCheckpoint;
  /** The swarm task the worker runs as. */
  self?: SelfIdentity;
}

function setup(s: Setup = {}) {
  const pipeline = fakePipeline(s.pipeline);
  const h = {
    source: new FakeSource(s.fetch),
    builder: new FakeBuilder(s.build),
    pusher: new FakePusher(s.push),
    deployer: new FakeDeployer(),
    self: new FakeSelf(s.self),
    checkpoints: new MemoryCheckpoints(),
    reporter: new MemoryReporter(),
    handoff: s.handoff ? new MemoryHandoff() : undefined,
    stop: new AbortController(),
    job: { runId: 'r1', pipeline, commit: COMMIT, worker: 'host-1', attempt: 1, instance: 'deployer-test', ...s.job } as RunJob,
  };
  if (s.checkpoint) h.checkpoints.saved.set('r1', s.checkpoint);
  const run = () =>
    executeRun(h.job, {
      ports: { source: h.source, builder: h.builder, pusher: h.pusher, deployer: h.deployer, self: h.self },
      report: h.reporter,
      stop: h.stop.signal,
      checkpoints: h.checkpoints,
      ...(h.handoff ? { handoff: h.handoff } : {}),
      retryDelaysMs: [1, 1, 1],
    });
  return { ...h, run };
}

const IMAGE = `127.0.0.1:5000/site:live@${DIGEST}`;
const finished = (r: MemoryReporter) => r.events.find((e) => e.type === 'run.finished');

describe('executeRun: a normal run', () => {
  it('fetches, builds, pushes both tags, deploys, records the deployment, then cleans up and prunes', async () => {
    const h = setup();
    const outcome = await h.run();
    expect(outcome).toEqual({ status: 'succeeded', commit: COMMIT, reported: true });
    expect(h.reporter.stages()).toEqual({ fetch: ['running', 'succeeded'], build: ['running', 'succeeded'], push: ['running', 'succeeded'], deploy: ['running', 'succeeded'] });
    expect(h.pusher.tags).toEqual([COMMIT, 'live']);
    expect(h.builder.requests[0]).toMatchObject({ tags: [`127.0.0.1:5000/site:${COMMIT}`, '127.0.0.1:5000/site:live'], labels: { 'org.opencontainers.image.revision': COMMIT } });
    expect(h.deployer.deploys.map((d) => [d.service, d.image, d.resumeSince])).toEqual([['www', IMAGE, undefined]]);
    expect(h.reporter.events.filter((e) => e.type === 'deployed')).toMatchObject([{ service: 'www', image: IMAGE, digest: DIGEST, commit: COMMIT }]);
    expect(h.checkpoints.cleared).toEqual(['r1']);
    expect(h.source.cleaned).toBe(1);
    expect(h.builder.pruned).toEqual([{ repository: '127.0.0.1:5000/site', keep: 3 }]);
    expect(h.reporter.log()).toContain('removed 1 old image(s) of 127.0.0.1:5000/site');
    const state = replay(h.reporter.events);
    expect(state).toMatchObject({ status: 'succeeded', commit: COMMIT, subject: 'the subject', image: { ref: IMAGE, digest: DIGEST }, finishedBy: 'worker' });
  });

  it('builds from a sub-folder context with only the files below it', async () => {
    const h = setup({ pipeline: { build: { context: './site/', dockerfile: 'Dockerfile', args: {}, target: 'prod' } } });
    h.source.files = ['README.md', 'site/Dockerfile', 'site/www/index.html'];
    expect((await h.run()).status).toBe('succeeded');
    expect(h.builder.requests[0]).toMatchObject({ contextDir: '/work/tree/site', files: ['Dockerfile', 'www/index.html'], target: 'prod' });
  });

  it('with no services, says there is nothing to deploy and succeeds', async () => {
    const h = setup({ pipeline: { services: [] } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).toContain('no services configured: nothing to deploy');
    replay(h.reporter.events);
  });

  it('a work tree that cannot be removed is a warning in the log, not a failure', async () => {
    const h = setup();
    h.source.failCleanup = true;
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).toContain('warning: could not remove work tree: EBUSY');
    replay(h.reporter.events); // the finishing worker's last words are accepted after the outcome
  });
});

describe('executeRun: failures', () => {
  it('a Dockerfile missing from the commit fails the build at once', async () => {
    const h = setup();
    h.source.files = ['www/index.html'];
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'failed', error: `build: Dockerfile does not exist in commit ${COMMIT.slice(0, 12)}` });
    expect(h.reporter.stages()).toEqual({ fetch: ['running', 'succeeded'], build: ['running', 'failed'], push: ['skipped'], deploy: ['skipped'] });
    expect(h.builder.requests).toHaveLength(0);
    expect(h.builder.pruned).toEqual([]); // only after a success
    expect(replay(h.reporter.events)).toMatchObject({ status: 'failed', error: outcome.error });
  });

  it('a permanent failure is not retried', async () => {
    const h = setup({ build: [new PermanentError('build_failed', 'RUN make: exit code 2')] });
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'build: RUN make: exit code 2' });
    expect(h.builder.script.calls).toBe(1);
    expect(h.reporter.log()).not.toMatch(/retry/);
  });

  it('a transient failure is retried and then succeeds, the retry in the log', async () => {
    const h = setup({ push: [transient('registry answered 503'), 'ok'] });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).toMatch(/retry 1\/3 in 0\.001 s after a transient error: registry answered 503/);
    replay(h.reporter.events);
  });

  it('retries exhausted: three retries, then the stage fails with the last error', async () => {
    const h = setup({ push: [transient('503 one'), transient('503 two'), transient('503 three'), transient('503 four')] });
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'failed', error: 'push: 503 four' });
    expect(h.pusher.script.calls).toBe(4);
    expect(h.reporter.log().match(/retry \d\/3/g)).toEqual(['retry 1/3', 'retry 2/3', 'retry 3/3']);
    expect(h.reporter.stages().deploy).toEqual(['skipped']);
    replay(h.reporter.events);
  });

  it('a registry reporting different digests for the two tags fails the push', async () => {
    const h = setup();
    h.pusher.digests = { live: `sha256:${'e'.repeat(64)}` };
    expect((await h.run()).error).toMatch(/^push: registry reported different digests/);
  });

  it('a checkpoint that cannot be read is treated as none: the retried run starts over', async () => {
    const h = setup({ job: { attempt: 2 } });
    h.checkpoints.failLoad = true;
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.script.calls).toBe(1);
  });
});

describe('executeRun: timeouts bound every stage, even when the adapter ignores its signal', () => {
  it('fails a build that hangs past its limit although the build never listens to the abort', async () => {
    const h = setup({ build: ['deaf'], pipeline: { timeouts: { fetch: 2000, build: 50, push: 2000, deploy: 2000 } } });
    const t0 = Date.now();
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'failed', error: 'build: build timed out after 50 ms' });
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(h.reporter.log()).toContain('error: build timed out after 50 ms');
    replay(h.reporter.events);
  });

  it('a well-behaved adapter sees the abort too', async () => {
    const h = setup({ fetch: ['listening'], pipeline: { timeouts: { fetch: 30, build: 2000, push: 2000, deploy: 2000 } } });
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'fetch: fetch timed out after 30 ms' });
  });

  it('a deploy that never returns is ended by the deploy stage timeout', async () => {
    const h = setup({ pipeline: { timeouts: { fetch: 2000, build: 2000, push: 2000, deploy: 60 } } });
    h.deployer.outcomes.www = 'deaf';
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'deploy: deploy timed out after 60 ms' });
    expect(h.reporter.events.some((e) => e.type === 'deployed')).toBe(false);
  });

  it('raceAbort settles with the work when it wins, and with the reason when aborted first', async () => {
    const ac = new AbortController();
    expect(await raceAbort(Promise.resolve(7), ac.signal)).toBe(7);
    await expect(raceAbort(Promise.reject(new Error('own')), ac.signal)).rejects.toThrow('own');
    ac.abort(new Error('stop now'));
    await expect(raceAbort(new Promise(() => undefined), ac.signal)).rejects.toThrow('stop now');
    const plain = new AbortController();
    plain.abort('not an error');
    await expect(raceAbort(Promise.reject(new Error('ignored')), plain.signal)).rejects.toThrow('aborted');
  });
});

describe('executeRun: stopping', () => {
  it('stop before a stage: nothing runs, every stage is cancelled, the run is cancelled', async () => {
    const h = setup();
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect(await h.run()).toMatchObject({ status: 'cancelled', error: 'cancelled by admin' });
    expect(h.source.script.calls).toBe(0);
    expect(h.reporter.stages()).toEqual({ fetch: ['cancelled'], build: ['cancelled'], push: ['cancelled'], deploy: ['cancelled'] });
    expect(replay(h.reporter.events).status).toBe('cancelled');
  });

  it('cancel mid-stage: the build stops, later stages are cancelled', async () => {
    const h = setup({ build: ['listening'] });
    const running = h.run();
    await until(() => h.builder.requests.length === 1);
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect(await running).toMatchObject({ status: 'cancelled', error: 'cancelled by admin' });
    expect(h.reporter.log()).toContain('stopped: cancelled by admin');
    expect(h.reporter.stages()).toEqual({ fetch: ['running', 'succeeded'], build: ['running', 'cancelled'], push: ['cancelled'], deploy: ['cancelled'] });
    expect(replay(h.reporter.events).status).toBe('cancelled');
  });

  it('cancel mid-stage stops waiting even for an adapter that ignores the signal', async () => {
    const h = setup({ push: ['deaf'] });
    const running = h.run();
    await until(() => h.pusher.tags.length === 1);
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect((await running).status).toBe('cancelled');
  });

  it('a stop during the retry pause ends the stage at once', async () => {
    const h = setup({ push: [transient()] });
    h.job = { ...h.job };
    const running = executeRunWithDelays(h, [60_000]);
    await until(() => h.reporter.log().includes('retry 1/1'));
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect((await running).status).toBe('cancelled');
  });

  it('supersede: a newer push stops a run before deploy; it ends superseded with a link', async () => {
    const h = setup({ build: ['listening'] });
    const running = h.run();
    await until(() => h.builder.requests.length === 1);
    h.stop.abort(new StopRequest('supersede', 'superseded by r2', 'r2'));
    expect(await running).toMatchObject({ status: 'superseded', supersededBy: 'r2' });
    expect(finished(h.reporter)).toMatchObject({ status: 'superseded', supersededBy: 'r2' });
    expect(replay(h.reporter.events)).toMatchObject({ status: 'superseded', supersededBy: 'r2' });
  });

  it('park: a shutdown before deploy puts the run back in the queue (no outcome, checkpoint kept)', async () => {
    const h = setup({ fetch: ['listening'] });
    const running = h.run();
    await until(() => h.source.script.calls === 1);
    h.stop.abort(new StopRequest('shutdown', 'the worker is shutting down'));
    expect(await running).toMatchObject({ status: 'parked', reported: true });
    expect(h.reporter.types()).toContain('run.parked');
    expect(finished(h.reporter)).toBeUndefined();
    expect(h.checkpoints.cleared).toEqual([]);
    expect(replay(h.reporter.events)).toMatchObject({ status: 'queued', worker: null, stages: { fetch: { status: 'pending' } } });
  });

  it('a stop that is not a StopRequest still cancels', async () => {
    const h = setup();
    h.stop.abort(new Error('odd'));
    expect(await h.run()).toMatchObject({ status: 'cancelled', error: 'odd' });
  });

  it('the deploy is never interrupted once it began: a cancel during it changes nothing', async () => {
    const h = setup();
    const deploying = new Promise<void>((resolve) => {
      h.deployer.deploy = async (req) => {
        resolve();
        await new Promise((r) => setTimeout(r, 20));
        return { service: req.service, outcome: 'succeeded', previousImage: null, image: req.image, taskErrors: [], message: 'converged' };
      };
    });
    const running = h.run();
    await deploying;
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect((await running).status).toBe('succeeded');
  });
});

describe('executeRun: rollback, resume and hand-off modes', () => {
  it('rollback: redeploys the pinned image without fetching, building or pushing', async () => {
    const image = `127.0.0.1:5000/site:live@sha256:${'a'.repeat(64)}`;
    const h = setup({ job: { image, commit: 'a'.repeat(40), recorded: { www: 'now/running:1' } } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.script.calls + h.builder.requests.length + h.pusher.tags.length).toBe(0);
    expect(h.reporter.stages()).toEqual({ fetch: ['skipped'], build: ['skipped'], push: ['skipped'], deploy: ['running', 'succeeded'] });
    expect(h.deployer.deploys[0]).toMatchObject({ image, recordedImage: 'now/running:1' });
    expect(h.reporter.log()).toContain(`rollback: redeploying ${image} (commit aaaaaaaaaaaa) without rebuilding`);
    expect(h.builder.pruned).toEqual([]);
    expect(replay(h.reporter.events, newRunState({ commit: 'a'.repeat(40), at: 'x' }))).toMatchObject({ status: 'succeeded', image: { ref: image } });
  });

  it('resume after a crash mid-deploy: earlier stages are done, the rollout is watched, not redone', async () => {
    const checkpoint: RunCheckpoint = { commit: COMMIT, image: IMAGE, digest: DIGEST, deployStartedAt: '2025-01-01T00:00:05Z', servicesDone: [] };
    const h = setup({ job: { attempt: 2 }, checkpoint });
    // As the store has it: attempt 1 was running the deploy when its worker died.
    const before = replay([{ type: 'run.started', runId: 'r1', at: 'a', worker: 'w0', attempt: 1 }]);
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.script.calls + h.builder.requests.length + h.pusher.tags.length).toBe(0);
    expect(h.deployer.deploys[0]).toMatchObject({ image: IMAGE, resumeSince: '2025-01-01T00:00:05Z' });
    expect(h.reporter.log()).toContain(`done by attempt 1 (image ${IMAGE})`);
    expect(h.reporter.log()).toContain('resuming: watching www');
    expect(replay(h.reporter.events, before)).toMatchObject({ status: 'succeeded', attempts: 2, commit: COMMIT, subject: null });
  });

  it('resume skips services the interrupted attempt had finished', async () => {
    const checkpoint: RunCheckpoint = { commit: COMMIT, image: IMAGE, digest: DIGEST, deployStartedAt: 't', servicesDone: ['a'] };
    const h = setup({ job: { attempt: 2 }, checkpoint, pipeline: { services: ['a', 'b'] } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.deployer.deploys.map((d) => d.service)).toEqual(['b']);
    expect(h.reporter.events.filter((e) => e.type === 'deployed').map((e) => (e as { service: string }).service)).toEqual(['a', 'b']);
  });

  it('a resumed deploy in flight is watched to its end even if a cancel is pending', async () => {
    const checkpoint: RunCheckpoint = { commit: COMMIT, image: IMAGE, digest: DIGEST, deployStartedAt: 't', servicesDone: [] };
    const h = setup({ job: { attempt: 2 }, checkpoint });
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect((await h.run()).status).toBe('succeeded');
  });

  it('attempt 2 without a checkpoint (died before deploy) starts over', async () => {
    const h = setup({ job: { attempt: 2 } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.script.calls).toBe(1);
  });

  it('hand-off: a worker that reaches no swarm manager pushes, then hands the deploy over', async () => {
    const h = setup({ handoff: true });
    h.deployer.manager = false;
    const outcome = await h.run();
    expect(outcome).toEqual({ status: 'handed_off', reported: true });
    expect(h.deployer.deploys).toEqual([]);
    expect(h.handoff!.handed.map((j) => j.runId)).toEqual(['r1']);
    expect(h.checkpoints.saved.get('r1')).toEqual({ commit: COMMIT, image: IMAGE, digest: DIGEST, servicesDone: [] });
    expect(h.reporter.types()).toContain('run.handoff');
    expect(finished(h.reporter)).toBeUndefined();
    const state = replay(h.reporter.events);
    expect(state).toMatchObject({ status: 'running', exec: null, stages: { push: { status: 'succeeded' }, deploy: { status: 'pending' } } });
    expect(state.handoffAt).not.toBeNull();
  });

  it('hand-off that cannot be queued fails the run', async () => {
    const h = setup({ handoff: true });
    h.deployer.manager = false;
    h.handoff!.fail = new Error('Redis is away');
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'deploy: could not hand the deploy to a worker that reaches a swarm manager: Redis is away' });
    expect(replay(h.reporter.events).status).toBe('failed');
  });

  it('a role check that fails proves nothing: the deploy runs here (and says what is wrong itself)', async () => {
    const h = setup({ handoff: true });
    h.deployer.canDeploy = () => Promise.reject(new Error('ECONNREFUSED'));
    expect((await h.run()).status).toBe('succeeded');
    expect(h.handoff!.handed).toEqual([]);
  });

  it('the deploy phase: the taking worker deploys what the checkpoint says; the earlier stages stand', async () => {
    const built = setup({ handoff: true });
    built.deployer.manager = false;
    await built.run();
    const handedState = replay(built.reporter.events);
    const h = setup({ job: { phase: 'deploy', worker: 'manager-1' }, checkpoint: built.checkpoints.saved.get('r1')!, handoff: true });
    h.stop.abort(new StopRequest('shutdown', 'shutting down')); // a deploy taken over is not parked
    expect((await h.run()).status).toBe('succeeded');
    expect(h.source.script.calls + h.builder.requests.length + h.pusher.tags.length).toBe(0);
    expect(h.reporter.stages()).toEqual({ deploy: ['running', 'succeeded'] });
    expect(h.deployer.deploys[0]).toMatchObject({ image: IMAGE });
    expect(h.deployer.deploys[0]!.resumeSince).toBeUndefined();
    expect(replay(h.reporter.events, handedState)).toMatchObject({ status: 'succeeded', worker: 'manager-1', stages: { build: { status: 'succeeded' }, deploy: { status: 'succeeded' } } });
  });

  it('the deploy phase without a checkpoint fails: the image to deploy is unknown', async () => {
    const h = setup({ job: { phase: 'deploy' } });
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'deploy: the image to deploy is unknown (its checkpoint is gone)' });
  });

  it('the deploy phase honours a cancel asked before the deploy began', async () => {
    const h = setup({ job: { phase: 'deploy' }, checkpoint: { commit: COMMIT, image: IMAGE, digest: DIGEST, servicesDone: [] } });
    h.stop.abort(new StopRequest('cancel', 'cancelled by admin'));
    expect((await h.run()).status).toBe('cancelled');
    expect(h.deployer.deploys).toEqual([]);
  });
});

describe('executeRun: the fleet', () => {
  it('multi-service rollback: when one service fails, the ones already updated are brought back', async () => {
    const h = setup({ pipeline: { services: ['a', 'b', 'c'] } });
    h.deployer.outcomes.b = 'rolled_back';
    h.deployer.previous.a = 'old/a:1';
    const outcome = await h.run();
    // Swarm rolled b back and a was put back: the previous version serves everywhere.
    expect(outcome).toMatchObject({ status: 'rolled_back', error: 'deploy: b rolled back: new tasks failed' });
    expect(h.deployer.deploys.map((d) => d.service)).toEqual(['a', 'b']);
    expect(h.deployer.restores.map((d) => [d.service, d.image])).toEqual([['a', 'old/a:1']]);
    const results = h.reporter.events.filter((e) => e.type === 'service.result').map((e) => (e as { result: { service: string; outcome: string } }).result);
    expect(results.map((r) => `${r.service}:${r.outcome}`)).toEqual(['a:succeeded', 'b:rolled_back', 'a:rolled_back']);
    expect(h.reporter.events.some((e) => e.type === 'deployed')).toBe(false);
    expect(h.reporter.log()).toContain('rolling a back to old/a:1 so all services serve the same version');
    replay(h.reporter.events);
  });

  it('a service swarm rolled back, but another that could not be put back: failed, not rolled_back', async () => {
    const h = setup({ pipeline: { services: ['a', 'b'] } });
    h.deployer.outcomes.b = 'rolled_back';
    h.deployer.restoreFails.add('a');
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'deploy: b rolled back: new tasks failed' });
  });

  it('a timed-out service stays failed even though swarm rolled it back', async () => {
    const h = setup({ pipeline: { services: ['a'] } });
    h.deployer.outcomes.a = 'timed_out';
    expect((await h.run()).status).toBe('failed');
  });

  it('a service with no previous image is not restored', async () => {
    const h = setup({ pipeline: { services: ['a', 'b'] } });
    h.deployer.previous.a = null;
    h.deployer.outcomes.b = 'timed_out';
    expect((await h.run()).error).toBe('deploy: b timed out: new tasks failed');
    expect(h.deployer.restores).toEqual([]);
  });

  it('a deploy that throws (service missing) fails the stage with its message', async () => {
    const h = setup();
    h.deployer.outcomes.www = new PermanentError('service_missing', 'service "www" does not exist on this swarm');
    expect((await h.run()).error).toBe('deploy: service "www" does not exist on this swarm');
  });

  it('a service without a target engine fails the deploy', async () => {
    const h = setup({ pipeline: { services: ['www'], targets: [] } });
    expect((await h.run()).error).toBe('deploy: service www has no target engine');
  });
});

describe('executeRun: odds and ends', () => {
  it('a rebuild (no commit given) deploys the branch head the fetch found', async () => {
    const h = setup({ job: { commit: null } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.pusher.tags[0]).toBe(COMMIT);
  });

  it('without test delays, the retry pauses are 1 s, 3 s and 9 s; a permanent failure waits for none', async () => {
    expect(RETRY_DELAYS_MS).toEqual([1000, 3000, 9000]);
    const h = setup({ build: [new PermanentError('build_failed', 'no')] });
    const outcome = await executeRun(h.job, { ports: { source: h.source, builder: h.builder, pusher: h.pusher, deployer: h.deployer }, report: h.reporter, stop: h.stop.signal, checkpoints: h.checkpoints });
    expect(outcome.status).toBe('failed');
  });

  it('the build stage refuses to run without a checkout', async () => {
    const h = setup();
    const ctx = createContext(h.job, { ports: { source: h.source, builder: h.builder, pusher: h.pusher, deployer: h.deployer }, report: h.reporter, stop: h.stop.signal, checkpoints: h.checkpoints }, undefined);
    await expect(buildStage(ctx, h.stop.signal)).rejects.toThrow('nothing was checked out to build');
  });

  it('stage timeouts read in seconds from one second up', () => {
    expect(new StageTimeout('build', 2000).message).toBe('build timed out after 2 s');
    expect(new StageTimeout('build', 250).message).toBe('build timed out after 250 ms');
  });

  it('a pipeline without services never needs a manager: no hand-off', async () => {
    const h = setup({ handoff: true, pipeline: { services: [] } });
    h.deployer.manager = false;
    expect((await h.run()).status).toBe('succeeded');
    expect(h.handoff!.handed).toEqual([]);
  });

  it('nothing pruned, nothing said', async () => {
    const h = setup();
    h.builder.prune = async () => 0;
    expect((await h.run()).status).toBe('succeeded');
    expect(h.reporter.log()).not.toContain('removed');
  });

  it('a supersede without the newer run\'s id still ends superseded', async () => {
    const h = setup();
    h.stop.abort(new StopRequest('supersede', 'superseded'));
    const outcome = await h.run();
    expect(outcome).toMatchObject({ status: 'superseded', error: 'superseded' });
    expect(outcome.supersededBy).toBeUndefined();
  });

  it('a reporter that throws mid-run: the run still ends failed, with the reason', async () => {
    const h = setup();
    const emit = h.reporter.emit.bind(h.reporter);
    h.reporter.emit = (e) => {
      if (e.type === 'stage.started' && e.stage === 'build') throw new Error('reporter broke');
      emit(e);
    };
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'reporter broke' });
    expect(finished(h.reporter)).toMatchObject({ status: 'failed', error: 'reporter broke' });
  });
});

describe('executeRun: reporting', () => {
  it('final flush failure: the outcome says it was not reported; housekeeping still runs; never throws', async () => {
    const h = setup();
    h.reporter.failFlush = true;
    const outcome = await h.run();
    expect(outcome).toEqual({ status: 'succeeded', commit: COMMIT, reported: false });
    expect(h.source.cleaned).toBe(1);
    expect(h.reporter.flushes).toBe(2);
  });

  it('a failure of the bookkeeping around the stages (a checkpoint write) fails the run with its reason', async () => {
    const h = setup();
    h.checkpoints.save = () => Promise.reject(new Error('READONLY You cannot write against a read only replica.'));
    expect(await h.run()).toMatchObject({ status: 'failed', error: 'deploy: READONLY You cannot write against a read only replica.' });
  });
});

function executeRunWithDelays(h: ReturnType<typeof setup>, delays: number[]) {
  return executeRun(h.job, { ports: { source: h.source, builder: h.builder, pusher: h.pusher, deployer: h.deployer }, report: h.reporter, stop: h.stop.signal, checkpoints: h.checkpoints, retryDelaysMs: delays });
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('endWithoutRunning: a worker decides not to run a run', () => {
  it('a waiting run is ended directly', () => {
    const r = new MemoryReporter();
    endWithoutRunning({ runId: 'r1', worker: 'w', attempt: 1 }, r, { status: 'superseded', error: 'superseded by r2', supersededBy: 'r2' });
    expect(r.types()).toEqual(['run.finished']);
    expect(replay(r.events)).toMatchObject({ status: 'superseded', supersededBy: 'r2' });
  });

  it('a run a dead worker held (a retry finds a newer success) is taken, then ended', () => {
    const dead = new MemoryReporter();
    dead.emit({ type: 'run.started', runId: 'r1', at: 'a', worker: 'w0', attempt: 1 });
    dead.emit({ type: 'stage.started', runId: 'r1', stage: 'build', at: 'a' });
    const held = replay(dead.events);
    const r = new MemoryReporter();
    endWithoutRunning({ runId: 'r1', worker: 'w1', attempt: 2 }, r, { status: 'superseded', error: 'superseded by r2', supersededBy: 'r2' });
    expect(r.types()).toEqual(['run.started', 'run.finished']);
    expect(replay(r.events, held)).toMatchObject({ status: 'superseded', supersededBy: 'r2', attempts: 2, stages: { build: { status: 'skipped' } } });
  });

  it('a deploy taken over is taken in the deploy phase, then ended', () => {
    const built = new MemoryReporter();
    built.emit({ type: 'run.started', runId: 'r1', at: 'a', worker: 'w0', attempt: 1 });
    built.emit({ type: 'run.handoff', runId: 'r1', at: 'a', reason: 'no manager' });
    const r = new MemoryReporter();
    endWithoutRunning({ runId: 'r1', worker: 'm', attempt: 1, phase: 'deploy' }, r, { status: 'failed', error: 'pipeline site is not configured like this on worker m' });
    expect(replay(r.events, replay(built.events))).toMatchObject({ status: 'failed', worker: 'm' });
  });
});

describe('executeRun: deploying the deployer itself', () => {
  const self = { service: 'www', task: 'task-old-0123456789', container: 'c-old', image: `127.0.0.1:5000/site:live@sha256:${'0'.repeat(64)}` };

  it('says in the checkpoint, before the update, that the service is its own', async () => {
    const h = setup({ self });
    let savedBeforeUpdate: RunCheckpoint | undefined;
    const deploy = h.deployer.deploy.bind(h.deployer);
    h.deployer.deploy = async (req) => {
      savedBeforeUpdate = structuredClone(h.checkpoints.saved.get('r1'));
      // Swarm replaced the task meanwhile: the process that finishes is the new one.
      h.self.me = { ...self, task: 'task-new-0123456789', image: IMAGE };
      return deploy(req);
    };
    const out = await h.run();
    expect(savedBeforeUpdate).toMatchObject({ selfService: 'www', deployStartedAt: expect.any(String) });
    expect(out.status).toBe('succeeded');
    expect(h.reporter.log()).toContain("www is the deployer's own service (this process is its task task-old-012)");
    expect(h.reporter.log()).toContain(`this deployer is task task-new-012 of www, running ${DIGEST}: the new version took over`);
  });

  it('a successor resuming the watch that does not run the new image fails the run, saying which image answers', async () => {
    const checkpoint = { commit: COMMIT, image: IMAGE, digest: DIGEST, servicesDone: [], deployStartedAt: '2026-01-01T00:00:00.000Z', selfService: 'www' };
    const h = setup({ self, job: { phase: 'deploy' }, checkpoint });
    const out = await h.run();
    expect(out.status).toBe('failed');
    expect(out.error).toBe(`deploy: www converged on ${DIGEST}, but this deployer (task task-old-012) runs sha256:${'0'.repeat(64)}: the new version is not the one running`);
    expect(h.deployer.deploys.map((d) => d.resumeSince)).toEqual(['2026-01-01T00:00:00.000Z']);
  });

  it('another service is no self-deploy: nothing said, nothing checked', async () => {
    const h = setup({ self: { ...self, service: 'deployer_web' } });
    expect((await h.run()).status).toBe('succeeded');
    expect(h.checkpoints.saved.get('r1')?.selfService).toBeUndefined();
    expect(h.reporter.log()).not.toContain("deployer's own service");
  });
});
