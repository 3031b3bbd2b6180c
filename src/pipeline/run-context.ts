import type { PipelineConfig } from '../config/types.ts';
import type { LineSink, RunEvent, RunReporter } from './events.ts';
import type { FleetJournalPort } from './fleet-journal.ts';
import type { Checkout, RunPorts } from './ports.ts';
import type { RunStatus, StageName, Trigger } from './states.ts';

export interface RunJob {
  runId: string;
  pipeline: PipelineConfig;
  /** Null means "the branch head as it is now" (rebuild). */
  commit: string | null;
  worker: string;
  /** 1 for the first try; more when the job is retried after its worker died. */
  attempt: number;
  /** Rollback: deploy this pinned image (repo:tag@sha256:…) without fetching or building. */
  image?: string;
  /** This deployer's instance name, written into service labels. */
  instance: string;
  /** Last recorded image per service (from the store, via the job). */
  recorded?: Record<string, string>;
  /** The commit the pipeline's recorded deployment serves (what the edge shows before, and after a rollback). */
  recordedCommit?: string;
  /** Pinned images of the pipeline's last deployments (rollback targets): pruning keeps them. */
  protect?: string[];
  /** 'deploy': another worker built and pushed the image (its checkpoint says which); only deploy. */
  phase?: 'deploy';
  /** Why the run exists; push and poll runs only deploy descendants of what serves (descent.ts). */
  trigger?: Trigger;
  /** What served when the run was queued (the store's record): used when `RunDeps.serving` knows nothing. */
  serving?: ServingRecord;
}

/** The commit that serves, and the run that deployed it. */
export interface ServingRecord {
  commit: string;
  runId: string;
}

/** What serves now, as the workers last recorded it (kept outside the worker, like checkpoints). */
export interface ServingPort {
  load(): Promise<ServingRecord | undefined>;
}

/** Where a run got to, kept outside the worker so a retry, or another worker, can go on from there. */
export interface RunCheckpoint {
  commit: string;
  image: string;
  digest: string;
  /** Set once the deploy began: a retry then watches the rollout instead of updating blindly. */
  deployStartedAt?: string;
  servicesDone: string[];
  /**
   * The deployer's own service, when this deploy updates it: the worker updating it is
   * replaced by the update, so on its way out it hands the run to its successor
   * (WorkerHost.close), which watches the rollout to its end and records it.
   */
  selfService?: string;
}

export interface CheckpointPort {
  load(runId: string): Promise<RunCheckpoint | undefined>;
  save(runId: string, checkpoint: RunCheckpoint): Promise<void>;
  clear(runId: string): Promise<void>;
}

/**
 * Hands a run's deploy to a worker that reaches a swarm manager, when this one does
 * not (src/queue/worker-host.ts queues it where such workers listen).
 */
export interface DeployHandoff {
  handOff(job: RunJob): Promise<void>;
}

export interface RunOutcome {
  /**
   * 'parked': stopped by a shutdown before deploy; the job goes back to the queue.
   * 'handed_off': built and pushed; the deploy continues on another worker.
   */
  status: RunStatus | 'parked' | 'handed_off';
  error?: string;
  supersededBy?: string;
  /** Succeeded: the commit it deployed (what serves now). */
  commit?: string;
  /** False when the outcome could not be published (Redis refused it even after retries). */
  reported: boolean;
}

/** What a run needs besides the job: the adapters, where to report, and when to stop. */
export interface RunDeps {
  ports: RunPorts;
  report: RunReporter;
  /** Aborted to stop fetch, build or push (cancel, newer push, shutdown), with a StopRequest. */
  stop: AbortSignal;
  checkpoints: CheckpointPort;
  /**
   * Each service's previous image, written before it is updated, kept outside the worker:
   * a resumed attempt restores the services a killed one updated. Absent: in memory only.
   */
  journal?: FleetJournalPort;
  /** Absent: this worker deploys whatever it builds. */
  handoff?: DeployHandoff;
  /** Pauses before each retry of a stage that failed with a transient error. */
  retryDelaysMs?: readonly number[];
  /** What serves now; absent: only the job's `serving` is known. */
  serving?: ServingPort;
}

/** How this execution treats the stages before deploy. */
export type RunMode =
  /** Fetch, build, push, deploy. */
  | 'build'
  /** Redeploy a recorded image: nothing to fetch or build. */
  | 'rollback'
  /** A retry after a dead worker that had reached deploy: the image is pushed; watch the deploy. */
  | 'resume'
  /** The deploy of a run another worker built (hand-off): the earlier stages stand as they are. */
  | 'deploy';

/**
 * The explicit state of one execution, passed to every stage: what it is given, and
 * what the stages found out so far (the commit, the pushed image).
 */
export interface RunContext {
  readonly job: RunJob;
  readonly deps: RunDeps;
  readonly mode: RunMode;
  /** The checkpoint this execution goes on from (resume and deploy modes). */
  readonly resume: RunCheckpoint | undefined;
  commit: string;
  /** Pinned reference repo:tag@sha256:… once pushed (or given, for rollback). */
  imageRef: string;
  digest: string;
  checkout: Checkout | undefined;
  /** Where the branch pointed at the last descent check (descent.ts), when it was learned. */
  branchHead?: string;
}

export const now = (): string => new Date().toISOString();

export function emit(ctx: RunContext, event: RunEvent): void {
  ctx.deps.report.emit(event);
}

/** A sink that sends each line to the run's log, under `stage`. */
export function logTo(ctx: RunContext, stage: StageName | null): LineSink {
  return (line) => emit(ctx, { type: 'log', runId: ctx.job.runId, stage, at: now(), lines: [line] });
}

export function createContext(job: RunJob, deps: RunDeps, resume: RunCheckpoint | undefined): RunContext {
  const mode: RunMode = job.phase === 'deploy' ? 'deploy' : resume ? 'resume' : job.image ? 'rollback' : 'build';
  return {
    job,
    deps,
    mode,
    resume,
    commit: resume?.commit ?? job.commit ?? '',
    imageRef: resume?.image ?? job.image ?? '',
    digest: resume?.digest ?? (job.image ? job.image.slice(job.image.indexOf('@') + 1) : ''),
    checkout: undefined,
  };
}
