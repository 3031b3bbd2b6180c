/**
 * Whether a failure talking to the Docker engine or a registry is worth retrying. The
 * Engine API gives no typed signal for this, so this adapter reads its answer: a broken
 * connection (daemon restarting, socket reset), or an HTTP 5xx/429 — as a status code,
 * or only in the text of a push stream's in-band error. A missing socket (ENOENT) is a
 * wrong `docker.host`, not a passing state: it fails at once.
 */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH']);

export function isTransient(err: unknown): boolean {
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  if (typeof e?.statusCode === 'number') return e.statusCode === 429 || e.statusCode >= 500;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /\b(5\d\d|429)\b.*\b(error|status|too many)|socket hang up|toomanyrequests/i.test(message);
}
