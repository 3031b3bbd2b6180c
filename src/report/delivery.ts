import { DeployerError } from '../lib/errors.ts';

/**
 * The outcome of one HTTP delivery (a GitHub request, a chat message, a webhook), as the
 * report queue needs it: was it refused for good (4xx: do not retry, warn), or did it
 * fail in a way that trying later can fix (5xx, 429, timeout, connection)? `status` is
 * the response code, null when there was no response.
 */
export class DeliveryError extends DeployerError {
  readonly status: number | null;
  constructor(message: string, opts: { status: number | null; retryable: boolean; cause?: unknown }) {
    super(opts.retryable ? 'delivery_failed' : 'delivery_refused', message, { retryable: opts.retryable, cause: opts.cause });
    this.name = 'DeliveryError';
    this.status = opts.status;
  }
}

/** Whether an HTTP status means "try again later" (server trouble, rate limit, request timeout). */
export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** What fetch's rejection means, without the URL (which may be a secret). */
export function networkError(err: unknown, timeoutMs: number): DeliveryError {
  const e = err as { name?: string; cause?: { code?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return new DeliveryError(`no answer within ${timeoutMs / 1000} s`, { status: null, retryable: true });
  const code = e?.cause?.code;
  return new DeliveryError(code ? `connection failed (${code})` : 'connection failed', { status: null, retryable: true });
}
