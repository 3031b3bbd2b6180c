import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Logger } from 'pino';
import type { GitHubReporting } from '../../config/types.ts';
import type { Secret } from '../../lib/secret.ts';
import { DeliveryError, networkError, retryableStatus } from '../delivery.ts';

/** One HTTP request as it went (Octokit's own retries included): what the pipeline page lists. */
export interface HttpAttempt {
  at: string;
  status: number | null;
  error: string | null;
  ms: number;
}
export type OnAttempt = (attempt: HttpAttempt) => void;

/** The GitHub requests the reporter makes: the port, so the sync logic does not know Octokit. */
export interface GitHubApi {
  createDeployment(repo: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ id: number; status: number }>;
  createDeploymentStatus(repo: string, deploymentId: number, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }>;
  createCheckRun(repo: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ id: number; status: number }>;
  updateCheckRun(repo: string, checkRunId: number, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }>;
  createCommitStatus(repo: string, sha: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }>;
  /** App (check runs) or token (commit statuses). */
  readonly mode: 'app' | 'token';
}

const Client = Octokit.plugin(retry, throttling);
type ClientInstance = InstanceType<typeof Client>;

/** One request's bound; GitHub answering slowly must not hold a report job forever. */
const REQUEST_TIMEOUT_MS = 15_000;

/**
 * GitHub through Octokit's maintained packages: @octokit/rest with the retry and
 * throttling plugins (rate limits, secondary limits, 5xx), @octokit/auth-app for a
 * GitHub App (JWT → installation token per repository, cached and renewed by the
 * library). The only module that imports Octokit. Errors leave as DeliveryError.
 */
export class OctokitGitHub implements GitHubApi {
  readonly mode: 'app' | 'token';
  readonly #config: GitHubReporting;
  readonly #token: Secret | undefined;
  readonly #log: Logger;
  readonly #retries: number;
  readonly #clients = new Map<string, Promise<ClientInstance>>();
  #appClient: ClientInstance | undefined;
  #tokenClient: ClientInstance | undefined;

  constructor(config: GitHubReporting, token: Secret | undefined, log: Logger, opts: { retries?: number } = {}) {
    this.#config = config;
    this.#token = token;
    this.#log = log;
    this.#retries = opts.retries ?? 2;
    this.mode = config.app ? 'app' : 'token';
  }

  async createDeployment(repo: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ id: number; status: number }> {
    const res = await this.#call(repo, onAttempt, (c, o) => c.request('POST /repos/{owner}/{repo}/deployments', { ...o, ...body } as never));
    const id = (res.data as { id?: unknown }).id;
    // 202 means GitHub merged the default branch instead of creating one (auto_merge): we never ask for that.
    if (typeof id !== 'number') throw new DeliveryError(`GitHub created no deployment (HTTP ${res.status})`, { status: res.status, retryable: false });
    return { id, status: res.status };
  }

  async createDeploymentStatus(repo: string, deploymentId: number, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }> {
    const res = await this.#call(repo, onAttempt, (c, o) => c.request('POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses', { ...o, deployment_id: deploymentId, ...body } as never));
    return { status: res.status };
  }

  async createCheckRun(repo: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ id: number; status: number }> {
    const res = await this.#call(repo, onAttempt, (c, o) => c.request('POST /repos/{owner}/{repo}/check-runs', { ...o, ...body } as never));
    return { id: (res.data as { id: number }).id, status: res.status };
  }

  async updateCheckRun(repo: string, checkRunId: number, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }> {
    const res = await this.#call(repo, onAttempt, (c, o) => c.request('PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}', { ...o, check_run_id: checkRunId, ...body } as never));
    return { status: res.status };
  }

  async createCommitStatus(repo: string, sha: string, body: Record<string, unknown>, onAttempt?: OnAttempt): Promise<{ status: number }> {
    const res = await this.#call(repo, onAttempt, (c, o) => c.request('POST /repos/{owner}/{repo}/statuses/{sha}', { ...o, sha, ...body } as never));
    return { status: res.status };
  }

  /**
   * One API call. Its requests (the retry plugin's included) go through a fetch of
   * their own that reports each attempt; the client's default fetch serves the App's
   * token requests.
   */
  async #call<T extends { status: number; data: unknown }>(
    repo: string,
    onAttempt: OnAttempt | undefined,
    fn: (c: ClientInstance, o: { owner: string; repo: string; request: { fetch: typeof fetch } }) => Promise<T>,
  ): Promise<T> {
    const [owner, name] = repo.split('/') as [string, string];
    let client: ClientInstance;
    const started = Date.now();
    try {
      client = await this.#clientFor(repo);
    } catch (err) {
      // No installation token (GitHub down, App not installed): the step's attempt failed there.
      const e = classify(err);
      onAttempt?.({ at: new Date(started).toISOString(), status: e.status, error: `getting an installation token: ${e.message}`, ms: Date.now() - started });
      throw e;
    }
    try {
      return await fn(client, { owner, repo: name, request: { fetch: recordingFetch(onAttempt) } });
    } catch (err) {
      throw classify(err);
    }
  }

  #clientFor(repo: string): Promise<ClientInstance> {
    if (!this.#config.app) {
      this.#tokenClient ??= this.#client({ auth: this.#token?.reveal() });
      return Promise.resolve(this.#tokenClient);
    }
    let client = this.#clients.get(repo);
    if (!client) {
      client = this.#installationClient(repo);
      // A failed lookup (not installed yet, GitHub down) is tried again next time.
      client.catch(() => this.#clients.delete(repo));
      this.#clients.set(repo, client);
    }
    return client;
  }

  async #installationClient(repo: string): Promise<ClientInstance> {
    const app = this.#config.app!;
    let installationId = app.installationId;
    if (installationId === undefined) {
      this.#appClient ??= this.#client({ authStrategy: createAppAuth, auth: { appId: app.id, privateKey: app.privateKey.reveal() } });
      const [owner, name] = repo.split('/') as [string, string];
      const res = await this.#appClient.rest.apps.getRepoInstallation({ owner, repo: name });
      installationId = res.data.id;
    }
    return this.#client({ authStrategy: createAppAuth, auth: { appId: app.id, privateKey: app.privateKey.reveal(), installationId } });
  }

  #client(auth: Record<string, unknown>): ClientInstance {
    const log = this.#log;
    return new Client({
      ...auth,
      baseUrl: this.#config.apiUrl,
      userAgent: 'deployer',
      request: { fetch: recordingFetch(undefined) },
      retry: { retries: this.#retries },
      throttle: {
        // Short waits are taken here; longer ones fail the attempt and the report
        // queue retries later (the deploy never waits either way).
        onRateLimit: (retryAfter: number, _opts: unknown, _o: unknown, retryCount: number) => retryCount < 1 && retryAfter <= 60,
        onSecondaryRateLimit: (retryAfter: number, _opts: unknown, _o: unknown, retryCount: number) => retryCount < 1 && retryAfter <= 60,
      },
      // Octokit's own messages (rate limit waits, deprecations): never carry tokens.
      log: {
        debug: (msg: string) => log.debug({ github: msg }, 'octokit'),
        info: (msg: string) => log.debug({ github: msg }, 'octokit'),
        warn: (msg: string) => log.warn({ github: String(msg) }, 'octokit warning'),
        error: (msg: string) => log.warn({ github: String(msg) }, 'octokit error'),
      },
    });
  }
}

/** fetch with a time bound per request, telling `onAttempt` how each went. */
function recordingFetch(onAttempt: OnAttempt | undefined): typeof fetch {
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const started = Date.now();
    const at = new Date(started).toISOString();
    const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) : AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    try {
      const res = await fetch(input, { ...init, signal });
      onAttempt?.({ at, status: res.status, error: res.status >= 400 ? `HTTP ${res.status}` : null, ms: Date.now() - started });
      return res;
    } catch (err) {
      onAttempt?.({ at, status: null, error: networkError(err, REQUEST_TIMEOUT_MS).message, ms: Date.now() - started });
      throw err;
    }
  }) as typeof fetch;
}

/** Octokit's RequestError (status, message) → DeliveryError; no response → retryable. */
function classify(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err;
  const e = err as { status?: number; message?: string; response?: { data?: { message?: string } } };
  if (typeof e?.status === 'number' && e.status > 0) {
    const detail = e.response?.data?.message ?? e.message ?? '';
    const rateLimited = e.status === 403 && /rate limit/i.test(detail);
    return new DeliveryError(`GitHub answered ${e.status}${detail ? `: ${oneLine(detail)}` : ''}`, { status: e.status, retryable: retryableStatus(e.status) || rateLimited, cause: err });
  }
  // No response: connection refused or reset, timeout, DNS.
  const inner = (err as { cause?: unknown })?.cause ?? err;
  return networkError(inner, REQUEST_TIMEOUT_MS);
}

function oneLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}
