import { createHmac, randomBytes } from 'node:crypto';
import type { Secret } from '../lib/secret.ts';
import { DeliveryError, networkError, retryableStatus } from '../report/delivery.ts';

/**
 * Standard Webhooks signature (https://www.standardwebhooks.com/): base64 of
 * HMAC-SHA256 over `${id}.${timestamp}.${body}`, keyed with the bytes of the secret's
 * base64 part (`whsec_<base64>`), sent as `v1,<signature>`.
 */
export function standardSignature(secret: Secret, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.reveal().slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** A webhook-id: unique per message, the same on every retry of it. */
export function newMessageId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`;
}

export interface SendResult {
  status: number;
}

/** POSTs a signed JSON webhook. Throws DeliveryError (refused for 4xx, retryable otherwise). */
export async function sendWebhook(target: { url: string; secret: Secret; timeoutMs: number }, id: string, body: string): Promise<SendResult> {
  // Signed per attempt: receivers reject old timestamps (replay protection).
  const timestamp = Math.floor(Date.now() / 1000);
  return post(target.url, body, target.timeoutMs, {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': standardSignature(target.secret, id, timestamp, body),
  });
}

/** POSTs a Block Kit message to a Slack incoming webhook (its URL is the secret). */
export async function sendSlack(target: { webhookUrl: Secret; timeoutMs: number }, body: string): Promise<SendResult> {
  return post(target.webhookUrl.reveal(), body, target.timeoutMs, {});
}

async function post(url: string, body: string, timeoutMs: number, headers: Record<string, string>): Promise<SendResult> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'deployer', ...headers },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    // Never the URL in the message: a Slack URL is a credential.
    throw networkError(err, timeoutMs);
  }
  // A receiver that sends the headers and then stalls must not hold the job either.
  const text = await readBounded(res, timeoutMs).catch(() => '');
  if (res.status >= 200 && res.status < 300) return { status: res.status };
  const detail = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  throw new DeliveryError(`receiver answered ${res.status}${detail ? `: ${detail}` : ''}`, { status: res.status, retryable: retryableStatus(res.status) });
}

/** The first 4 KiB of the answer, for the error message; then the body is abandoned. */
async function readBounded(res: Response, timeoutMs: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const timer = setTimeout(() => void reader.cancel().catch(() => undefined), timeoutMs);
  try {
    while (size < 4096) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    clearTimeout(timer);
    void reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).toString('utf8');
}
