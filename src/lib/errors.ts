/**
 * Typed errors. The class says what to do next — the queue retries a `Transient`,
 * fails the run on anything else; an HTTP client is refused (4xx) on a `Refused`, told
 * to come back (503) on an `Unavailable` — and `code` says what happened. Errors are
 * classified where they arise (the adapter that reads a foreign system's answer);
 * callers branch on the class and `code`, never on message text.
 */
export type ErrorCode =
  | 'config_invalid'
  | 'git_failed'
  /** A commit the repository does not have (the descent check cannot place it). */
  | 'commit_unknown'
  | 'build_failed'
  | 'push_failed'
  | 'registry_auth'
  | 'placement_failed'
  | 'service_missing'
  | 'service_owned'
  | 'deploy_failed'
  /** The rollout converged, but users did not get the new commit (edge verification, probe): rolled back. */
  | 'deploy_rolled_back'
  | 'docker_unavailable'
  | 'not_found'
  | 'conflict'
  | 'invalid_input'
  | 'queue_unavailable'
  | 'store_unavailable'
  /** A report or notification receiver said no for good (bad credentials, 4xx): not retried. */
  | 'delivery_refused'
  /** A receiver failed or did not answer (5xx, 429, timeout, connection): retried with backoff. */
  | 'delivery_failed';

export class DeployerError extends Error {
  readonly code: ErrorCode;
  /** Whether trying the same thing again can help (the queue retries the stage). */
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DeployerError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/** A failure that may pass: the queue retries the stage after a pause. */
export class TransientError extends DeployerError {
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { ...opts, retryable: true });
    this.name = 'TransientError';
  }
}

/** A failure no retry can fix: the run fails with this message. */
export class PermanentError extends DeployerError {
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { ...opts, retryable: false });
    this.name = 'PermanentError';
  }
}

/** A request that cannot be done as asked: the client gets a 4xx and nothing changed. */
export class Refused extends DeployerError {
  readonly status: 400 | 404 | 409 | 413 | 422;
  constructor(status: 400 | 404 | 409 | 413 | 422, message: string, opts: { cause?: unknown } = {}) {
    super(status === 404 ? 'not_found' : status === 409 ? 'conflict' : 'invalid_input', message, opts);
    this.name = 'Refused';
    this.status = status;
  }
}

/**
 * Something the request needs is down (Redis, the store): nothing was recorded, and the
 * client should come back later (503). The message says why, for the log.
 */
export class Unavailable extends DeployerError {
  constructor(code: 'queue_unavailable' | 'store_unavailable', message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { ...opts, retryable: true });
    this.name = 'Unavailable';
  }
}

/** Runs could not be queued (Redis refused or did not answer); nothing was recorded. */
export class QueueUnavailable extends Unavailable {
  constructor(message = 'queue unavailable; retry later', opts: { cause?: unknown } = {}) {
    super('queue_unavailable', message, opts);
    this.name = 'QueueUnavailable';
  }
}

/** The store could not record a request (disk full, locked); nothing was recorded. */
export class StoreUnavailable extends Unavailable {
  constructor(message = 'could not record the request; retry later', opts: { cause?: unknown } = {}) {
    super('store_unavailable', message, opts);
    this.name = 'StoreUnavailable';
  }
}

/** Codes of failures in a system we talk to (git remote, Docker, registry): upstream, not us. */
const UPSTREAM: ReadonlySet<ErrorCode> = new Set(['git_failed', 'build_failed', 'push_failed', 'registry_auth', 'service_missing', 'service_owned', 'deploy_failed', 'docker_unavailable']);

export interface HttpAnswer {
  status: number;
  /** Said to the client; never the details of an internal failure. */
  message: string;
  /** Worth an error log line (with the error, its stack and cause). */
  log: boolean;
}

/**
 * The one mapping from errors to HTTP answers (used by the web app's error handler):
 * Refused → its 4xx, Unavailable → 503, an upstream system's failure → 502, a framework
 * error that carries a 4xx status (bad JSON, body too large) → that status; anything
 * else is a 500 whose details stay in the log.
 */
export function httpAnswer(err: unknown): HttpAnswer {
  if (err instanceof Refused) return { status: err.status, message: err.message, log: false };
  // The reason (which command timed out, which disk is full) is for the log, not the client.
  if (err instanceof Unavailable) return { status: 503, message: err.code === 'queue_unavailable' ? 'queue unavailable; retry later' : 'could not record it; retry later', log: true };
  if (err instanceof DeployerError && UPSTREAM.has(err.code)) return { status: 502, message: err.message, log: true };
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return { status, message: errorMessage(err), log: false };
  return { status: 500, message: 'internal error', log: true };
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** First line only, trimmed: run and stage errors are one-line reasons. */
export function oneLine(text: string, max = 500): string {
  const line = text.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
