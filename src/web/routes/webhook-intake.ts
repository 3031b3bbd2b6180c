import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * Reading an unauthenticated webhook body without letting it cost more than it may.
 * Anyone can POST to the webhook route, and nothing is known about a body until its
 * last byte has gone through the HMAC; so: refuse on the headers alone when they cannot
 * be GitHub's, read at most GitHub's cap, hold at most WEBHOOK_BODY_BUDGET bytes and
 * WEBHOOK_MAX_BODIES bodies of unverified data at once (503 + Retry-After beyond, before
 * reading), and keep exactly one copy of a body while it is read. The server's request
 * timeout (config `http.requestTimeout`) ends a client that sends slowly.
 */

/** GitHub caps a delivery's payload at 25 MB; anything larger is not from GitHub. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;
/** Unverified bytes held at once, by all deliveries being read (announced lengths count in full). */
export const WEBHOOK_BODY_BUDGET = 64 * 1024 * 1024;
/** Unverified bodies being read at once. */
export const WEBHOOK_MAX_BODIES = 32;
/** Seconds a refused sender is asked to wait. */
export const RETRY_AFTER_S = 5;

export interface Refusal {
  status: number;
  error: string;
  retryAfter?: number;
}

export interface DeliveryHeaders {
  event: string;
  delivery: string;
  /** The 32 bytes of `X-Hub-Signature-256`. */
  signature: Buffer;
  /** Content-Length; undefined for a chunked body. */
  length: number | undefined;
}

/** GitHub's event names are lowercase words joined by `_` (`push`, `pull_request_review`). */
const EVENT = /^[a-z][a-z_]{0,63}$/;
/** GitHub sends a GUID; other characters are refused so ids can be logged and stored as they are. */
const DELIVERY = /^[\w.-]{1,200}$/;
const SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;

/** Everything that can be decided before the body is read. */
export function checkDeliveryHeaders(headers: IncomingHttpHeaders): DeliveryHeaders | Refusal {
  const event = first(headers['x-github-event']);
  const delivery = first(headers['x-github-delivery']);
  const signature = first(headers['x-hub-signature-256']);
  if (!event || !delivery) return { status: 400, error: 'missing X-GitHub-Event or X-GitHub-Delivery header' };
  if (!EVENT.test(event)) return { status: 400, error: 'malformed X-GitHub-Event header' };
  if (!DELIVERY.test(delivery)) return { status: 400, error: 'malformed X-GitHub-Delivery header' };
  if (!signature) return { status: 401, error: 'missing X-Hub-Signature-256 header' };
  const hex = SIGNATURE.exec(signature)?.[1];
  if (!hex) return { status: 401, error: 'malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)' };
  // Node has already refused a malformed Content-Length, and one sent with chunking.
  const declared = headers['content-length'];
  const length = declared === undefined ? undefined : Number(declared);
  if (length !== undefined && length > WEBHOOK_BODY_LIMIT) {
    return { status: 413, error: `body of ${length} bytes is over GitHub's ${WEBHOOK_BODY_LIMIT}-byte limit` };
  }
  return { event, delivery, signature: Buffer.from(hex, 'hex'), length };
}

export function isRefusal(v: unknown): v is Refusal {
  return typeof v === 'object' && v !== null && 'status' in v && 'error' in v;
}

/** One admitted body's share of the budget; `release` is idempotent. */
export interface Share {
  /** Asks for `bytes` more (a chunked body growing); false when the budget is spent. */
  grow(bytes: number): boolean;
  release(): void;
}

/** The bytes and count of unverified bodies being read, shared by all deliveries. */
export class BodyBudget {
  readonly #maxBytes: number;
  readonly #maxBodies: number;
  #bytes = 0;
  #bodies = 0;

  constructor(maxBytes = WEBHOOK_BODY_BUDGET, maxBodies = WEBHOOK_MAX_BODIES) {
    this.#maxBytes = maxBytes;
    this.#maxBodies = maxBodies;
  }

  /** A share of `announced` bytes, or undefined when it does not fit (answer 503, read nothing). */
  admit(announced: number): Share | undefined {
    if (this.#bodies >= this.#maxBodies || this.#bytes + announced > this.#maxBytes) return undefined;
    this.#bodies++;
    this.#bytes += announced;
    let held = announced;
    let released = false;
    return {
      grow: (bytes) => {
        if (released) return false;
        if (this.#bytes + bytes > this.#maxBytes) return false;
        this.#bytes += bytes;
        held += bytes;
        return true;
      },
      release: () => {
        if (released) return;
        released = true;
        this.#bytes -= held;
        this.#bodies--;
      },
    };
  }

  get bytes(): number {
    return this.#bytes;
  }

  get bodies(): number {
    return this.#bodies;
  }
}

const EMPTY = Buffer.alloc(0);

export interface SignedBody {
  raw: Buffer;
  /** Whether the HMAC of exactly these bytes matches the signature. */
  valid: boolean;
}

/**
 * Reads `stream` to its end through the HMAC, keeping one copy of the bytes (written
 * into one buffer of the announced length, or kept as the chunks that arrived), so
 * that a verified body can be parsed. Resolves to a Refusal when the body is over the
 * limit or the budget; rejects only when the client went away.
 */
export function readSignedBody(
  stream: Readable,
  opts: { secret: string; signature: Buffer; length: number | undefined; share: Share },
): Promise<SignedBody | Refusal> {
  return new Promise((resolve, reject) => {
    const hmac = createHmac('sha256', opts.secret);
    const whole = opts.length !== undefined ? Buffer.allocUnsafeSlow(opts.length) : undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (result: SignedBody | Refusal | Error) => {
      if (settled) return;
      settled = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      opts.share.release();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const stop = (refusal: Refusal) => {
      // Nothing more is read: the answer goes out with `Connection: close`, which ends the socket.
      stream.pause();
      finish(refusal);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > WEBHOOK_BODY_LIMIT) return stop({ status: 413, error: `body is over GitHub's ${WEBHOOK_BODY_LIMIT}-byte limit` });
      if (whole) {
        // Node ends the body at Content-Length, so this cannot overflow.
        chunk.copy(whole, received - chunk.length);
      } else {
        if (!opts.share.grow(chunk.length)) return stop({ status: 503, error: 'too many webhook bodies being received; retry later', retryAfter: RETRY_AFTER_S });
        chunks.push(chunk);
      }
      hmac.update(chunk);
    };
    const onEnd = () => {
      const digest = hmac.digest();
      // Constant time: how much of a guess matched must not show in the answer's timing.
      const valid = digest.length === opts.signature.length && timingSafeEqual(digest, opts.signature);
      // Only a verified body is joined into one buffer (briefly a second copy of a chunked one).
      const raw = !valid ? EMPTY : whole ? whole.subarray(0, received) : Buffer.concat(chunks, received);
      chunks.length = 0;
      finish({ raw, valid });
    };
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new Error('client closed the connection before the body ended'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** The signature check of an empty body (a request without one never reaches the reader). */
export function verifyEmpty(secret: string, signature: Buffer): boolean {
  const digest = createHmac('sha256', secret).digest();
  return timingSafeEqual(digest, signature);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
