import type { RunEvent } from './events.ts';
import type { ProbeResult, ServiceDeployResult, VerifyResult } from './ports.ts';
import { canTransitionRun, canTransitionStage, isTerminal, STAGE_NAMES, type RunStatus, type StageName, type StageStatus } from './states.ts';

/**
 * The run lifecycle: one pure function from (run state, event) to the new state, and
 * the only code that changes a run's state. The store loads the state, asks `applyEvent`,
 * and writes what it answers; it never decides a transition itself. Every rule about
 * what may happen when lives here:
 *
 * - start, retry after a dead worker (attempt > the last one: stages start over), park
 *   (graceful shutdown: back to queued), hand-off of the deploy to a worker that reaches
 *   a swarm manager, finish by the worker, and finish by the store (cancel or supersede
 *   while waiting, reconcile);
 * - exactly once: a stamped event (see EventStamp) is applied only if it comes from
 *   the execution that holds the run and is newer than the last one applied;
 * - late events change nothing: once a run is finished no event of any kind (status,
 *   stage, log, image, service result, deployment) is applied — except the log lines
 *   the finishing worker writes right after its outcome (work tree removal, image
 *   pruning), and only from that execution.
 */

export interface StageState {
  status: StageStatus;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

export interface RunState {
  status: RunStatus;
  /** Executions that started it (a retry after a dead worker, or a resumed park, adds one). */
  attempts: number;
  worker: string | null;
  /** The execution whose events apply now; null before the first start and after a park. */
  exec: string | null;
  /** The sequence number of the last event applied from `exec`. */
  seq: number;
  /** Set while the deploy waits for a worker that reaches a swarm manager (run.handoff). */
  handoffAt: string | null;
  /** Who ended the run: its worker, or the store (waiting run cancelled or superseded, reconcile). */
  finishedBy: 'worker' | 'store' | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  supersededBy: string | null;
  commit: string | null;
  subject: string | null;
  author: string | null;
  image: { ref: string; digest: string } | null;
  stages: Record<StageName, StageState>;
}

/** Decisions the store makes on its own: a waiting run cancelled or superseded, a lost run failed. */
export interface StoreFinish {
  type: 'store.finished';
  runId: string;
  status: 'cancelled' | 'superseded' | 'failed';
  at: string;
  error: string;
  supersededBy?: string;
}

export type LifecycleEvent = RunEvent | StoreFinish;

/** What an applied event adds besides the run's state: rows the store appends. */
export type RunRecord =
  | { kind: 'log'; stage: StageName | null; at: string; lines: string[] }
  | { kind: 'service.result'; at: string; result: ServiceDeployResult }
  | { kind: 'checks'; at: string; verify?: VerifyResult; probe?: ProbeResult; verifyPrevious?: VerifyResult }
  | { kind: 'deployment'; service: string; image: string; digest: string; commit: string; at: string };

export type Verdict =
  | { applied: true; run: RunState; records: RunRecord[] }
  /**
   * duplicate: this execution's event was applied before. stale: from an execution that
   * no longer holds the run. refused: not a legal step from the run's state.
   */
  | { applied: false; why: 'duplicate' | 'stale' | 'refused'; detail: string };

const pendingStage = (): StageState => ({ status: 'pending', startedAt: null, finishedAt: null, error: null });

function allStages(make: (name: StageName) => StageState): Record<StageName, StageState> {
  return Object.fromEntries(STAGE_NAMES.map((n) => [n, make(n)])) as Record<StageName, StageState>;
}

/** A new run waiting for a worker; or, with `supersededBy`, one replaced before it was ever queued. */
export function newRunState(opts: { commit: string | null; subject?: string | null; author?: string | null; at: string; supersededBy?: string }): RunState {
  const superseded = opts.supersededBy !== undefined;
  return {
    status: superseded ? 'superseded' : 'queued',
    attempts: 0,
    worker: null,
    exec: null,
    seq: 0,
    handoffAt: null,
    finishedBy: superseded ? 'store' : null,
    startedAt: null,
    finishedAt: superseded ? opts.at : null,
    error: superseded ? `superseded by ${opts.supersededBy}` : null,
    supersededBy: opts.supersededBy ?? null,
    commit: opts.commit,
    subject: opts.subject ?? null,
    author: opts.author ?? null,
    image: null,
    stages: allStages(() => (superseded ? { ...pendingStage(), status: 'skipped', finishedAt: opts.at } : pendingStage())),
  };
}

const refused = (detail: string): Verdict => ({ applied: false, why: 'refused', detail });
const done = (run: RunState, records: RunRecord[] = []): Verdict => ({ applied: true, run, records });

/** Applies one event to a run's state. Pure: the input is not modified. */
export function applyEvent(run: RunState, e: LifecycleEvent): Verdict {
  if (e.type === 'store.finished') return finish(run, e.status, e.at, e.error, e.supersededBy, 'store');
  const stamped = typeof e.exec === 'string' && typeof e.seq === 'number';
  if (e.type === 'run.started') {
    if (stamped && e.exec === run.exec) return e.seq! <= run.seq ? { applied: false, why: 'duplicate', detail: `event ${e.seq} of ${e.exec} already applied` } : refused(`${e.exec} already started the run`);
    const verdict = start(run, e);
    if (verdict.applied && stamped) verdict.run = { ...verdict.run, exec: e.exec!, seq: e.seq! };
    return verdict;
  }
  // Finishing a run that never started: the worker decided before starting (a newer
  // commit already deployed, the pipeline is not configured there).
  const unstartedFinish = e.type === 'run.finished' && run.status === 'queued';
  if (stamped && !unstartedFinish) {
    if (e.exec !== run.exec) return { applied: false, why: 'stale', detail: `from execution ${e.exec}, but ${run.exec ?? 'none'} holds the run` };
    if (e.seq! <= run.seq) return { applied: false, why: 'duplicate', detail: `event ${e.seq} of ${e.exec} already applied` };
  }
  const verdict = step(run, e);
  if (verdict.applied && stamped) verdict.run = { ...verdict.run, exec: unstartedFinish ? e.exec! : verdict.run.exec, seq: e.seq! };
  return verdict;
}

function start(run: RunState, e: Extract<RunEvent, { type: 'run.started' }>): Verdict {
  // An unstamped start (an older worker) leaves no execution to check later events against.
  const started = { worker: e.worker, exec: null, handoffAt: null, finishedBy: null, error: null };
  if (e.phase === 'deploy') {
    // The deploy of a handed-off run (the build worker queued it before saying so: its
    // run.handoff may arrive after this, and is then stale), or its retry after that
    // worker died (a higher attempt). An older attempt's deploy is a straggler.
    if (run.status !== 'running' || e.attempt < run.attempts) {
      return refused(`a deploy of attempt ${e.attempt} cannot start a ${run.status} run (attempt ${run.attempts})`);
    }
    return done(
      { ...run, ...started, attempts: Math.max(run.attempts, e.attempt), seq: 0, stages: { ...run.stages, deploy: pendingStage() } },
      [{ kind: 'log', stage: 'deploy', at: e.at, lines: [`deploy taken over by ${e.worker} (attempt ${e.attempt})`] }],
    );
  }
  if (run.status === 'running' && e.attempt > run.attempts) {
    // The previous attempt's worker died mid-run: this attempt starts over.
    return done(
      { ...run, ...started, attempts: e.attempt, seq: 0, stages: allStages(pendingStage) },
      [{ kind: 'log', stage: null, at: e.at, lines: [`attempt ${e.attempt} on ${e.worker}: the previous attempt was interrupted; starting over`] }],
    );
  }
  if (run.status !== 'queued' || !canTransitionRun(run.status, 'running')) return refused(`cannot start a ${run.status} run (attempt ${e.attempt}, last ${run.attempts})`);
  return done({ ...run, ...started, status: 'running', seq: 0, attempts: Math.max(e.attempt, run.attempts + 1), startedAt: e.at, stages: allStages(pendingStage) });
}

function step(run: RunState, e: Exclude<RunEvent, { type: 'run.started' }>): Verdict {
  const running = run.status === 'running';
  switch (e.type) {
    case 'run.finished':
      return finish(run, e.status, e.at, e.error ?? null, e.supersededBy, 'worker');
    case 'run.parked':
      if (!running || !canTransitionRun(run.status, 'queued')) return refused(`cannot park a ${run.status} run`);
      return done(
        { ...run, status: 'queued', worker: null, exec: null, seq: 0, startedAt: null, handoffAt: null, stages: allStages(pendingStage) },
        [{ kind: 'log', stage: null, at: e.at, lines: [`parked: ${e.reason}`] }],
      );
    case 'run.handoff':
      if (!running || run.handoffAt !== null) return refused(`cannot hand off a ${run.status} run`);
      return done({ ...run, exec: null, seq: 0, handoffAt: e.at }, [{ kind: 'log', stage: 'deploy', at: e.at, lines: [`deploy handed off: ${e.reason}`] }]);
    case 'run.commit': {
      if (!running) return refused(`commit of a ${run.status} run`);
      if (run.commit !== null && run.commit !== e.commit) return refused(`commit ${e.commit} is not the run's ${run.commit}`);
      return done({ ...run, commit: e.commit, subject: e.subject || run.subject, author: e.author || run.author });
    }
    case 'stage.started':
    case 'stage.finished': {
      if (!running) return refused(`${e.type} ${e.stage} of a ${run.status} run`);
      const stage = run.stages[e.stage];
      if (!stage) return refused(`no stage ${String(e.stage)}`);
      const to: StageStatus = e.type === 'stage.started' ? 'running' : e.status;
      if (!canTransitionStage(stage.status, to)) return refused(`stage ${e.stage} cannot go from ${stage.status} to ${to}`);
      const next: StageState = e.type === 'stage.started' ? { status: to, startedAt: e.at, finishedAt: null, error: null } : { ...stage, status: to, finishedAt: e.at, error: e.error ?? null };
      return done({ ...run, stages: { ...run.stages, [e.stage]: next } });
    }
    case 'log': {
      // The finishing worker's last words (work tree removal, image pruning) still count.
      const postscript = isTerminal(run.status) && run.finishedBy === 'worker' && typeof e.exec === 'string' && e.exec === run.exec;
      if (!running && !postscript) return refused(`log of a ${run.status} run`);
      if (e.lines.length === 0) return done(run);
      return done(run, [{ kind: 'log', stage: e.stage, at: e.at, lines: e.lines }]);
    }
    case 'image':
      if (!running) return refused(`image of a ${run.status} run`);
      return done({ ...run, image: { ref: e.ref, digest: e.digest } });
    case 'service.result':
      if (!running) return refused(`service result of a ${run.status} run`);
      return done(run, [{ kind: 'service.result', at: e.at, result: e.result }]);
    case 'deploy.checks':
      if (!running) return refused(`deploy checks of a ${run.status} run`);
      return done(run, [{ kind: 'checks', at: e.at, ...(e.verify ? { verify: e.verify } : {}), ...(e.probe ? { probe: e.probe } : {}), ...(e.verifyPrevious ? { verifyPrevious: e.verifyPrevious } : {}) }]);
    case 'deployed':
      if (!running) return refused(`deployment of a ${run.status} run`);
      return done(run, [{ kind: 'deployment', service: e.service, image: e.image, digest: e.digest, commit: e.commit, at: e.at }]);
    default:
      return refused(`unknown event type ${String((e as { type?: unknown }).type)}`);
  }
}

function finish(run: RunState, status: RunStatus, at: string, error: string | null, supersededBy: string | undefined, by: 'worker' | 'store'): Verdict {
  if (!isTerminal(status)) return refused(`${status} is not an end state`);
  if (!canTransitionRun(run.status, status)) return refused(`a ${run.status} run cannot end ${status}`);
  // Whatever the worker did not report is closed: a stage still running was cut short,
  // one never reached was skipped.
  const stages = allStages((name) => {
    const s = run.stages[name];
    if (s.status === 'running') return { ...s, status: 'cancelled', finishedAt: s.finishedAt ?? at };
    if (s.status === 'pending') return { ...s, status: 'skipped', finishedAt: s.finishedAt ?? at };
    return s;
  });
  return done({ ...run, status, finishedAt: at, error, supersededBy: supersededBy ?? run.supersededBy, finishedBy: by, handoffAt: null, stages });
}
