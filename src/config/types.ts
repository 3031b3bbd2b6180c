import type { Secret } from '../lib/secret.ts';
import type { AuthConfig } from './auth.ts';
import type { EdgeVerifySettings, OnFailure, ProbeSettings } from './verify.ts';

/** Rollout settings applied to every target service of a pipeline. */
export interface DeploySettings {
  order: 'start-first' | 'stop-first';
  monitorMs: number;
  /** The deployer's own bound on a rollout: swarm alone can wait forever on a pending task. */
  timeoutMs: number;
  failureAction: 'rollback' | 'pause' | 'continue';
}

export interface DockerEndpoint {
  host: string;
  /** PEM file paths for tcp:// with TLS. */
  tls?: { ca: string; cert: string; key: string } | undefined;
}

export interface ServiceTarget {
  service: string;
  docker: DockerEndpoint;
}

/**
 * How a pipeline's image is built (`build:`). The config loader sets every field; the
 * newer ones are optional only so that pipelines built by hand (tests) stay short.
 */
export interface BuildSettings {
  context: string;
  dockerfile: string;
  args: Record<string, string>;
  target: string | undefined;
  /** buildkit (default) or classic. */
  builder?: 'buildkit' | 'classic';
  /** e.g. linux/amd64; undefined = the engine's own platform. */
  platform?: string | undefined;
  /** Build secrets by id (`RUN --mount=type=secret,id=…`), read when the config is loaded. */
  secrets?: Record<string, Secret>;
  /** Images whose inline cache BuildKit may reuse; default the pipeline's `<image>:<tag>`. */
  cacheFrom?: string[];
}

export interface PipelineConfig {
  name: string;
  repo: string;
  url: string;
  branch: string;
  build: BuildSettings;
  image: string;
  /** Registry host of `image`, to find credentials. */
  registry: string;
  tag: string;
  /** Service names, in update order (the same order as `targets`). */
  services: string[];
  /** Each service with the engine that runs it (the top-level docker endpoint by default). */
  targets: ServiceTarget[];
  deploy: DeploySettings;
  /** Hard limit per stage, in ms. */
  timeouts: Record<'fetch' | 'build' | 'push' | 'deploy', number>;
  /** A newer push also stops a run still in fetch/build/push. */
  cancelSuperseded: boolean;
  /** How often the branch head is checked for pushes whose webhook never came (ms; 0 = never). */
  pollMs: number;
  /** GitHub deployment environment (`environment` or `github.environment`; default the top-level one). */
  environment: string;
  /** The site's public URL, if known: the deployment's environment_url. */
  publicUrl: string | undefined;
  /** What is posted to GitHub about this pipeline's runs. */
  report: ReportKind[];
  retention: {
    /** Finished runs kept (newest first). */
    runs: number;
    /** Finished runs older than this are removed (ms). */
    ageMs: number;
    /** Log kept per run: the head and the tail, with what was left out said in between. */
    logBytes: number;
    /** Images of this pipeline kept on the build host (newest first). */
    images: number;
    /** Images of the last N deployments, never pruned and watched in the registry (src/config/verify.ts; default 5). */
    protect?: number;
  };
  /** `deploy.verify`: the edge must show the new commit after the rollout (src/config/verify.ts). */
  verify?: EdgeVerifySettings | undefined;
  /** `deploy.probe`: light traffic during the rollout, measuring downtime. */
  probe?: ProbeSettings | undefined;
  /** `onFailure`: after a failed or rolled-back newest run, deploy the newest good superseded push. Default stop. */
  onFailure?: OnFailure;
}

export interface RegistryConfig {
  host: string;
  username: string | undefined;
  password: Secret | undefined;
}

/** What the deployer passes on from its own environment (src/config/environment.ts). */
export interface HostEnvironment {
  path: string;
  home: string;
  sshAuthSock: string | undefined;
  /** The commit the running image was built from (DEPLOYER_REVISION), when known. */
  revision: string | undefined;
}

export interface Config {
  /** Absolute path of the file this came from; relative paths in it resolve against its folder. */
  file: string;
  listen: { host: string; port: number };
  publicUrl: string;
  dataDir: string;
  redisUrl: string;
  /** Namespace of every Redis key (queues, event stream), so instances can share a Redis. */
  redisPrefix: string;
  logLevel: string;
  github: { webhookSecret: Secret; token: Secret | undefined } & GitHubReporting;
  auth: AuthConfig;
  /** Proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed; empty: none. */
  trustProxy: string[];
  /** The engine that builds and pushes. */
  docker: DockerEndpoint;
  /** The engine service updates go to (`docker.manager`; default `docker`): it must be a swarm manager. */
  manager: DockerEndpoint;
  /** Names this deployer in the labels of the services it manages (ownership). */
  instance: string;
  /** How often services are compared with the recorded deployments (ms; 0 = never). */
  driftIntervalMs: number;
  /** How often the manifests of rollback targets are checked in the registry (ms; 0 = never). */
  rollbackCheckIntervalMs?: number;
  registries: RegistryConfig[];
  /** How long a client may take to send a request (ms): all of it, and its headers. */
  http: { requestTimeoutMs: number; headersTimeoutMs: number };
  /** concurrency: runs at once per process; deadAfterMs: how long a silent worker keeps its job (lock). */
  worker: { concurrency: number; deadAfterMs: number };
  pipelines: PipelineConfig[];
  /** Chat and webhook receivers told about runs and drift. */
  notify: NotifyTarget[];
  metrics: MetricsConfig;
  environment: HostEnvironment;
}

export type ReportKind = 'deployments' | 'checks';

/** What is posted to GitHub, where, and with which credentials (src/config/integrations.ts). */
export interface GitHubReporting {
  apiUrl: string;
  /** Where people browse: commit links in notifications. */
  webUrl: string;
  /** A GitHub App (check runs); else the token (commit statuses). */
  app: { id: number; privateKey: Secret; installationId: number | undefined } | undefined;
  report: ReportKind[];
  environment: string;
}

export type NotifyEvent = 'started' | 'succeeded' | 'failed' | 'rolled_back' | 'timed_out' | 'cancelled' | 'recovered' | 'drift';

interface NotifyCommon {
  /** Position in the config's `notify` list: names the target in records. */
  index: number;
  on: NotifyEvent[];
  pipelines: string[] | undefined;
  timeoutMs: number;
}

export type NotifyTarget =
  | ({ kind: 'slack'; webhookUrl: Secret } & NotifyCommon)
  | ({ kind: 'webhook'; url: string; secret: Secret } & NotifyCommon);

export interface MetricsConfig {
  /** Bearer token that may read GET /metrics (the admin token always may). */
  token: Secret | undefined;
}
