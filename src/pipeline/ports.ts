import type { DeploySettings, DockerEndpoint, PipelineConfig } from '../config/types.ts';
import type { EdgeVerifySettings, ProbeSettings } from '../config/verify.ts';
import type { Secret } from '../lib/secret.ts';
import type { LineSink } from './events.ts';

/**
 * The adapters a run needs. The runner depends on these interfaces only; src/git and
 * src/docker implement them against simple-git and dockerode.
 */
export interface Checkout {
  commit: string;
  subject: string;
  author: string;
  /** Root of a clean work tree holding exactly the commit's files. */
  dir: string;
  /** Every tracked file, relative to `dir` (what a build context may contain). */
  files: string[];
  /** Where the pipeline's branch pointed in the fetch that brought `commit` (null if unknown). */
  branchHead: string | null;
  cleanup(): Promise<void>;
}

export interface SourcePort extends BranchHeadPort {
  /** Fetches `commit` (or the branch head when null) and checks it out in a fresh work tree. */
  checkout(req: { pipeline: PipelineConfig; commit: string | null; signal: AbortSignal; log: LineSink }): Promise<Checkout>;
  /**
   * Whether `ancestor` is `descendant` or one of its ancestors (`git merge-base
   * --is-ancestor` on the mirror; the branch is fetched first if either is missing).
   * Throws a DeployerError with code `commit_unknown` when a commit is not in the
   * repository even after that.
   */
  isAncestor(req: { pipeline: PipelineConfig; ancestor: string; descendant: string; signal: AbortSignal }): Promise<boolean>;
}

export interface BuildRequest {
  contextDir: string;
  /** Candidate files relative to contextDir; .dockerignore is applied on top. */
  files: string[];
  dockerfile: string;
  args: Record<string, string>;
  target: string | undefined;
  labels: Record<string, string>;
  /** Full references "repo:tag"; the first is the build tag, the rest are added after. */
  tags: string[];
  signal: AbortSignal;
  log: LineSink;
  /**
   * `buildkit` (the default) or `classic`. BuildKit falls back to the classic builder,
   * saying so in the log, on an engine that recommends it (Windows, or BuildKit turned off).
   */
  builder?: 'buildkit' | 'classic';
  /** Target platform such as "linux/amd64"; the engine's own when unset. */
  platform?: string | undefined;
  /** Build secrets by id, for `RUN --mount=type=secret,id=ID` (BuildKit only). Masked in the log. */
  secrets?: Record<string, Secret>;
  /**
   * Images whose layers may be reused (BuildKit imports their inline cache from the
   * registry, so a fresh build host does not rebuild unchanged layers).
   */
  cacheFrom?: string[];
}

export interface BuildPort {
  build(req: BuildRequest): Promise<{ imageId: string }>;
  /**
   * Removes this repository's images from the build host except the newest `keep`
   * (and any in use). Rollbacks pull by digest from the registry, so local copies are
   * only a cache. Images in `protect` (pinned refs "repo:tag@sha256:…", digests or
   * image ids: the last deployments' rollback targets) are never removed. Returns how
   * many were removed.
   */
  prune(repository: string, keep: number, protect?: string[]): Promise<number>;
}

export interface PushPort {
  /** Pushes repository:tag; resolves with the manifest digest the registry reported. */
  push(req: { repository: string; registry: string; tag: string; signal: AbortSignal; log: LineSink }): Promise<{ digest: string }>;
}

export interface DeployRequest {
  service: string;
  /** The engine that runs the service. */
  endpoint: DockerEndpoint;
  /** Written into the service's labels; a service labelled for another owner is refused. */
  owner: { instance: string; pipeline: string };
  /** The image the deployer last recorded for this service, to report drift it replaces. */
  recordedImage?: string | undefined;
  /** Full reference, pinned: "repo:tag@sha256:…". */
  image: string;
  registry: string;
  settings: DeploySettings;
  signal: AbortSignal;
  log: LineSink;
  /**
   * Set when resuming after the deployer died mid-deploy (ISO time the interrupted
   * attempt began): watch what is in progress instead of updating blindly.
   */
  resumeSince?: string;
  /**
   * Called with the image the service runs just before the deployer changes its spec
   * (after the placement pre-check), so the run can journal it first (fleet-journal.ts).
   */
  beforeUpdate?: (previousImage: string | null) => Promise<void>;
}

export type ServiceOutcome = 'succeeded' | 'rolled_back' | 'failed' | 'timed_out';

/** How one service's deploy truly ended. */
export interface ServiceDeployResult {
  service: string;
  /**
   * succeeded: converged on the new image. rolled_back: the new image failed and the
   * previous one was verified serving again. timed_out: did not converge in time; the
   * deployer rolled back (verified). failed: could not roll back, or left unconverged.
   */
  outcome: ServiceOutcome;
  previousImage: string | null;
  /** The image the service's spec runs at the end. */
  image: string | null;
  taskErrors: string[];
  message: string;
}

export interface DeployPort {
  /**
   * Updates the service and watches the rollout to its true end. Rejects only when
   * nothing was changed (service missing, Docker unreachable, owned by someone else).
   */
  deploy(req: DeployRequest): Promise<ServiceDeployResult>;
  /** Brings an already-updated service back to `image` (fleet rollback); outcome rolled_back or failed. */
  restore(req: DeployRequest): Promise<ServiceDeployResult>;
  /**
   * Throws `placement_failed` if swarm could not place a task of `req.image` for the
   * service (deploy() checks this too; a fleet checks every service before updating any).
   */
  precheck?(req: DeployRequest): Promise<void>;
  /**
   * False when one of these engines answers and is not a swarm manager (a worker
   * node's engine: service updates need a manager). Such a worker hands its deploys to
   * one that reaches a manager. An engine that does not answer counts as able: the
   * deploy then fails with Docker's own error.
   */
  canDeploy(endpoints: DockerEndpoint[]): Promise<boolean>;
}

/** Edge verification's answer, recorded on the run as `verify: { ok, detail, … }` (issue #15). */
export interface VerifyResult {
  ok: boolean;
  /** One line: what the edge served ("served by the proxy: old revision 0a1b2c3d4e5f (X-Revision) — …"). */
  detail: string;
  /** The commit that was expected. */
  commit: string;
  url: string;
  requests: number;
  elapsedMs: number;
}

/** The downtime probe's figures, recorded on the run as `probe: { sent, failed, p50Ms, p99Ms, longestGapMs, … }` (issue #15). */
export interface ProbeResult {
  url: string;
  /** When the first request was due (ISO). */
  startedAt: string;
  sent: number;
  /** No answer, no answer in time, or a 5xx. */
  failed: number;
  /** Latency percentiles of the answered, not failed, requests (whole body read). */
  p50Ms: number;
  p99Ms: number;
  /**
   * The longest time nobody got a good answer: between two good answers (by when they
   * arrived), or from the start to the first, or from the last to the end.
   */
  longestGapMs: number;
  durationMs: number;
  /** The first failures, for the log (all are counted in `failed`). */
  failures: { atMs: number; what: string }[];
}

export interface CheckedRollout<T> {
  /** What the rollout itself returned. */
  value: T;
  /** `probe` for the run, when configured. */
  probe?: ProbeResult;
  /** `verify: { ok, detail, … }` for the run, when configured and the rollout succeeded. */
  verify?: VerifyResult;
  /** Why the deploy must be rolled back although swarm converged; undefined if it need not be. */
  failure?: string;
}

/**
 * What users got (src/verify): the probe around a rollout, edge verification after it,
 * and the previous commit at the edge after a rollback.
 */
export interface EdgeCheckPort {
  checkedRollout<T>(req: {
    probe: ProbeSettings | undefined;
    verify: EdgeVerifySettings | undefined;
    commit: string;
    previousCommit?: string | undefined;
    rollout: () => Promise<T>;
    converged: (value: T) => boolean;
    log: LineSink;
  }): Promise<CheckedRollout<T>>;
  verifyPrevious(settings: EdgeVerifySettings, previousCommit: string, log: LineSink): Promise<VerifyResult>;
}

export interface RunPorts {
  source: SourcePort;
  builder: BuildPort;
  pusher: PushPort;
  deployer: DeployPort;
  /** Needed by pipelines with deploy.verify or deploy.probe (the daemon always gives it). */
  checks?: EdgeCheckPort;
  /** Which swarm task this process is: a deploy of its own service hands over (docs/architecture.md, "Self-deploy"). */
  self?: SelfPort;
}

/** The swarm task a process runs as. */
export interface SelfIdentity {
  service: string;
  task: string;
  container: string;
  /** The image the task runs, as swarm wrote it in the spec (`repo:tag@sha256:…` when pinned). */
  image: string;
}

export interface SelfPort {
  /** Undefined outside a swarm task. */
  identity(): Promise<SelfIdentity | undefined>;
}

export interface BranchHeadPort {
  /** The commit the pipeline's branch points at upstream now (git ls-remote). */
  branchHead(pipeline: PipelineConfig, signal?: AbortSignal): Promise<string>;
}

export interface ServiceInspector {
  /** The image a service's spec runs now; null if the service does not exist. */
  currentImage(endpoint: DockerEndpoint, service: string): Promise<string | null>;
}
