/**
 * Typed errors. `code` says what happened, `retryable` whether trying again can help;
 * callers branch on these, never on message text.
 */
export type ErrorCode =
  | 'config_invalid'
  | 'git_failed'
  | 'build_failed'
  | 'push_failed'
  | 'registry_auth'
  | 'service_missing'
  | 'service_owned'
  | 'update_out_of_sequence'
  | 'deploy_failed'
  | 'docker_unavailable'
  | 'cancelled'
  | 'timed_out'
  | 'not_found'
  | 'invalid_input'
  /** A report or notification receiver said no for good (bad credentials, 4xx): not retried. */
  | 'delivery_refused'
  /** A receiver failed or did not answer (5xx, 429, timeout, connection): retried with backoff. */
  | 'delivery_failed';

export class DeployerError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DeployerError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
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

const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOENT', 'EHOSTUNREACH']);

/**
 * Whether a failure talking to Docker or a registry is worth retrying: the connection
 * broke (daemon restarting, socket gone), or the server said 5xx/429.
 */
export function isTransient(err: unknown): boolean {
  const e = err as { code?: string; statusCode?: number; message?: string };
  if (e?.code && TRANSIENT_CODES.has(e.code)) return true;
  if (typeof e?.statusCode === 'number') return e.statusCode === 429 || e.statusCode >= 500;
  return /\b(5\d\d|429)\b.*\b(error|status|too many)|socket hang up|toomanyrequests/i.test(e?.message ?? '');
}
