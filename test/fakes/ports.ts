/**
 * In-memory implementations of our own ports (src/pipeline/ports.ts, run-context.ts),
 * for fast tests of the run logic only. Each does what its script says; the real-engine
 * tests (test/integration) check the same behaviour against git, Docker and swarm.
 */
import type { EdgeVerifySettings, ProbeSettings } from '../../src/config/verify.ts';
import type { FleetJournalPort, JournalEntry, JournalState } from '../../src/pipeline/fleet-journal.ts';
import type { CheckedRollout, EdgeCheckPort, VerifyResult } from '../../src/pipeline/ports.ts';
import type { PipelineConfig } from '../../src/config/types.ts';
import { DeployerError } from '../../src/lib/errors.ts';
import { applyEvent, newRunState, type RunState } from '../../src/pipeline/lifecycle.ts';
import type { RunEvent, RunReporter } from '../../src/pipeline/events.ts';
import type { BuildPort, BuildRequest, Checkout, DeployPort, DeployRequest, PushPort, ServiceDeployResult, ServiceOutcome, SelfIdentity, SelfPort, SourcePort } from '../../src/pipeline/ports.ts';
import type { CheckpointPort, DeployHandoff, RunCheckpoint, RunJob } from '../../src/pipeline/run-context.ts';

/**
 * What one call does: succeed; fail with an error; hang until its signal aborts
 * ('listening', as well-behaved adapters do); or hang forever whatever the signal says
 * ('deaf': the adapter bug that once hung a build).
 */
export type Step = 'ok' | Error | 'listening' | 'deaf';

export class Script {
  readonly #steps: Step[];
  calls = 0;
  constructor(steps: Step[] = []) {
    this.#steps = steps;
  }
  /** Runs the next step (after the script: 'ok'). */
  async next(signal: AbortSignal): Promise<void> {
    const step = this.#steps[this.calls++] ?? 'ok';
    if (step === 'ok') return;
    if (step instanceof Error) throw step;
    if (step === 'deaf') return new Promise<never>(() => undefined);
    return new Promise<never>((_, reject) => {
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }
}

/** A transient failure, as the adapters classify one. */
export function transient(message = 'registry answered 503'): Error {
  return Object.assign(new Error(message), { retryable: true });
}

export const COMMIT = 'c'.repeat(40);
export const DIGEST = `sha256:${'d'.repeat(64)}`;

export class FakeSource implements SourcePort {
  readonly script: Script;
  cleaned = 0;
  failCleanup = false;
  files = ['Dockerfile', 'www/index.html'];
  /** Where the branch points; undefined: at whatever commit is checked out. */
  head: string | undefined;
  /** Where the remote says the branch points when asked later (default `head`); an Error is thrown. */
  remoteHead: string | Error | undefined;
  /** The repository's history: each commit's parents. A commit not listed is unknown to git. */
  parents: Record<string, string[]> = {};
  readonly ancestryQuestions: [string, string][] = [];
  constructor(steps: Step[] = []) {
    this.script = new Script(steps);
  }
  async branchHead(): Promise<string> {
    const h = this.remoteHead ?? this.head ?? COMMIT;
    if (h instanceof Error) throw h;
    return h;
  }
  async isAncestor(req: Parameters<SourcePort['isAncestor']>[0]): Promise<boolean> {
    this.ancestryQuestions.push([req.ancestor, req.descendant]);
    for (const c of [req.ancestor, req.descendant]) {
      if (!(c in this.parents)) throw new DeployerError('commit_unknown', `commit ${c.slice(0, 12)} is not in the repository`);
    }
    const seen = new Set<string>();
    const todo = [req.descendant];
    while (todo.length) {
      const c = todo.pop()!;
      if (c === req.ancestor) return true;
      if (seen.has(c)) continue;
      seen.add(c);
      todo.push(...(this.parents[c] ?? []));
    }
    return false;
  }
  async checkout(req: Parameters<SourcePort['checkout']>[0]): Promise<Checkout> {
    req.log('fetching');
    await this.script.next(req.signal);
    return {
      commit: req.commit ?? COMMIT,
      subject: 'the subject',
      author: 'An Author',
      dir: '/work/tree',
      files: this.files,
      branchHead: this.head ?? req.commit ?? COMMIT,
      cleanup: async () => {
        this.cleaned++;
        if (this.failCleanup) throw new Error('EBUSY: work tree in use');
      },
    };
  }
}

export class FakeBuilder implements BuildPort {
  readonly script: Script;
  readonly requests: BuildRequest[] = [];
  pruned: { repository: string; keep: number }[] = [];
  constructor(steps: Step[] = []) {
    this.script = new Script(steps);
  }
  async build(req: BuildRequest): Promise<{ imageId: string }> {
    this.requests.push(req);
    req.log('Step 1/2 : FROM scratch');
    await this.script.next(req.signal);
    return { imageId: 'sha256:image' };
  }
  async prune(repository: string, keep: number): Promise<number> {
    this.pruned.push({ repository, keep });
    return 1;
  }
}

export class FakePusher implements PushPort {
  readonly script: Script;
  readonly tags: string[] = [];
  /** Digest reported per tag (default DIGEST for all). */
  digests: Record<string, string> = {};
  constructor(steps: Step[] = []) {
    this.script = new Script(steps);
  }
  async push(req: Parameters<PushPort['push']>[0]): Promise<{ digest: string }> {
    this.tags.push(req.tag);
    await this.script.next(req.signal);
    return { digest: this.digests[req.tag] ?? DIGEST };
  }
}

export class FakeDeployer implements DeployPort {
  /** How each service's deploy ends (default succeeded); an Error is thrown; 'deaf' never settles. */
  outcomes: Record<string, ServiceOutcome | Error | 'deaf'> = {};
  readonly deploys: DeployRequest[] = [];
  readonly restores: DeployRequest[] = [];
  manager = true;
  /** What each service runs before the deploy. */
  previous: Record<string, string | null> = {};
  /** Services whose restore fails. */
  restoreFails = new Set<string>();

  async deploy(req: DeployRequest): Promise<ServiceDeployResult> {
    this.deploys.push(req);
    const o = this.outcomes[req.service] ?? 'succeeded';
    if (o instanceof Error) throw o;
    if (o === 'deaf') return new Promise<never>(() => undefined);
    const previousImage = this.previous[req.service] === undefined ? `old/${req.service}:1` : this.previous[req.service]!;
    if (!req.resumeSince) await req.beforeUpdate?.(previousImage);
    return { service: req.service, outcome: o, previousImage, image: o === 'succeeded' ? req.image : previousImage, taskErrors: o === 'succeeded' ? [] : ['task exited 1'], message: o === 'succeeded' ? 'converged' : 'new tasks failed' };
  }
  async restore(req: DeployRequest): Promise<ServiceDeployResult> {
    this.restores.push(req);
    if (this.restoreFails.has(req.service)) return { service: req.service, outcome: 'failed', previousImage: null, image: 'unknown', taskErrors: [], message: 'could not restore' };
    return { service: req.service, outcome: 'rolled_back', previousImage: null, image: req.image, taskErrors: [], message: `restored ${req.image}` };
  }
  async canDeploy(): Promise<boolean> {
    return this.manager;
  }
}

export class MemoryCheckpoints implements CheckpointPort {
  readonly saved = new Map<string, RunCheckpoint>();
  failLoad = false;
  cleared: string[] = [];
  async load(runId: string): Promise<RunCheckpoint | undefined> {
    if (this.failLoad) throw new Error('Redis is away');
    const cp = this.saved.get(runId);
    return cp ? structuredClone(cp) : undefined;
  }
  async save(runId: string, checkpoint: RunCheckpoint): Promise<void> {
    this.saved.set(runId, structuredClone(checkpoint));
  }
  async clear(runId: string): Promise<void> {
    this.cleared.push(runId);
    this.saved.delete(runId);
  }
}

export class MemoryHandoff implements DeployHandoff {
  readonly handed: RunJob[] = [];
  fail: Error | undefined;
  async handOff(job: RunJob): Promise<void> {
    if (this.fail) throw this.fail;
    this.handed.push(job);
  }
}

let executions = 0;

/**
 * Records what a run reports, stamped like StreamReporter stamps it (this execution's
 * id, a number per event). `failFlush`: every flush rejects (Redis refused the events).
 */
export class MemoryReporter implements RunReporter {
  readonly events: RunEvent[] = [];
  readonly exec = `exec-${++executions}`;
  #seq = 0;
  failFlush = false;
  flushes = 0;
  emit(event: RunEvent): void {
    this.events.push({ ...structuredClone(event), exec: this.exec, seq: ++this.#seq });
  }
  async flush(): Promise<void> {
    this.flushes++;
    if (this.failFlush) throw new Error('Redis refused the events');
  }
  types(): string[] {
    return this.events.map((e) => e.type);
  }
  log(): string {
    return this.events.flatMap((e) => (e.type === 'log' ? e.lines : [])).join('\n');
  }
  stages(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const e of this.events) {
      if (e.type === 'stage.started') (out[e.stage] ??= []).push('running');
      if (e.type === 'stage.finished') (out[e.stage] ??= []).push(e.status);
    }
    return out;
  }
}

/**
 * Feeds events through the run lifecycle, as the store would, from `state` (a new
 * queued run by default). Throws on the first event the lifecycle refuses: every
 * sequence a runner reports must be a legal one.
 */
export function replay(events: RunEvent[], state: RunState = newRunState({ commit: null, at: '2025-01-01T00:00:00Z' })): RunState {
  let s = state;
  for (const e of events) {
    const v = applyEvent(s, e);
    if (!v.applied) throw new Error(`the lifecycle refused ${e.type}${'stage' in e ? ` ${e.stage}` : ''}: ${v.why}: ${v.detail}`);
    s = v.run;
  }
  return s;
}

/** A pipeline as the config loader makes one, with short timeouts for fast tests. */
export function fakePipeline(over: Partial<PipelineConfig> = {}): PipelineConfig {
  const services = over.services ?? ['www'];
  return {
    name: 'site',
    repo: 'acme/site',
    url: 'file:///srv/git/site.git',
    branch: 'main',
    build: { context: '.', dockerfile: 'Dockerfile', args: {}, target: undefined },
    image: '127.0.0.1:5000/site',
    registry: '127.0.0.1:5000',
    tag: 'live',
    services,
    targets: services.map((service) => ({ service, docker: { host: 'unix:///var/run/docker.sock' } })),
    deploy: { order: 'start-first', monitorMs: 100, timeoutMs: 1000, failureAction: 'rollback' },
    timeouts: { fetch: 2000, build: 2000, push: 2000, deploy: 2000 },
    cancelSuperseded: false,
    pollMs: 0,
    environment: 'production',
    publicUrl: undefined,
    report: [],
    retention: { runs: 10, ageMs: 86_400_000, logBytes: 1024 * 1024, images: 3 },
    ...over,
  };
}

/** The fleet journal kept in memory (RedisFleetJournal's behaviour: the first record of a service wins). */
export class MemoryFleetJournal implements FleetJournalPort {
  readonly runs = new Map<string, Map<string, JournalEntry>>();
  async begin(runId: string, service: string, previousImage: string | null): Promise<JournalEntry> {
    const m = this.runs.get(runId) ?? new Map<string, JournalEntry>();
    this.runs.set(runId, m);
    const had = m.get(service);
    if (had) return { ...had };
    const e: JournalEntry = { service, previousImage, state: 'updating', seq: m.size, at: new Date().toISOString() };
    m.set(service, e);
    return { ...e };
  }
  async mark(runId: string, service: string, state: JournalState): Promise<void> {
    const e = this.runs.get(runId)?.get(service);
    if (e) e.state = state;
  }
  async entries(runId: string): Promise<JournalEntry[]> {
    return [...(this.runs.get(runId)?.values() ?? [])].map((e) => ({ ...e })).sort((a, b) => a.seq - b.seq);
  }
  async clear(runId: string): Promise<void> {
    this.runs.delete(runId);
  }
}

/** Edge checks with scripted answers: the rollout runs for real, the edge and probe answer as told. */
export class FakeChecks implements EdgeCheckPort {
  verifyOk = true;
  previousOk = true;
  probeFailed = 0;
  maxFailedSeen: (number | undefined)[] = [];
  readonly previousAsked: string[] = [];
  async checkedRollout<T>(req: {
    probe: ProbeSettings | undefined;
    verify: EdgeVerifySettings | undefined;
    commit: string;
    previousCommit?: string | undefined;
    rollout: () => Promise<T>;
    converged: (value: T) => boolean;
  }): Promise<CheckedRollout<T>> {
    const value = await req.rollout();
    const out: CheckedRollout<T> = { value };
    if (req.probe) {
      out.probe = { url: req.probe.url, startedAt: new Date().toISOString(), sent: 40, failed: this.probeFailed, p50Ms: 2, p99Ms: 9, longestGapMs: this.probeFailed ? 1500 : 60, durationMs: 2000, failures: [] };
      this.maxFailedSeen.push(req.probe.maxFailed);
      if (req.probe.maxFailed !== undefined && this.probeFailed > req.probe.maxFailed) out.failure = `the probe saw ${this.probeFailed} of 40 requests fail during the rollout`;
    }
    if (req.verify && req.converged(value) && !out.failure) {
      out.verify = this.#answer(this.verifyOk, req.verify.url, req.commit, req.previousCommit);
      if (!out.verify.ok) out.failure = `not verified at the edge: ${out.verify.detail}`;
    }
    return out;
  }
  async verifyPrevious(settings: { url: string }, previousCommit: string): Promise<VerifyResult> {
    this.previousAsked.push(previousCommit);
    return this.#answer(this.previousOk, settings.url, previousCommit);
  }
  #answer(ok: boolean, url: string, commit: string, previous?: string): VerifyResult {
    const detail = ok ? `served by the proxy: revision ${commit.slice(0, 12)}` : `served by the proxy: old revision ${(previous ?? 'f'.repeat(40)).slice(0, 12)} (X-Revision)`;
    return { ok, detail, commit, url, requests: 3, elapsedMs: 600 };
  }
}

/** The swarm task this process is, as a test says (undefined: not a task). */
export class FakeSelf implements SelfPort {
  me: SelfIdentity | undefined;
  constructor(me?: SelfIdentity) {
    this.me = me;
  }
  async identity(): Promise<SelfIdentity | undefined> {
    return this.me;
  }
}
