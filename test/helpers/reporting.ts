import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import type { Received } from '../support/receivers.ts';

/** Secrets a reporting test configures, written to files as Docker secrets are. */
export interface ReportingSecrets {
  dir: string;
  /** A GitHub App key as GitHub hands it out (PKCS#1 PEM), and its public half. */
  appKeyPem: string;
  appKeyFile: string;
  publicKeyPem: string;
  /** A personal access token. */
  token: string;
  tokenFile: string;
  /** A Slack incoming-webhook URL on the receiver (the URL is the credential). */
  slackUrl: string;
  slackUrlFile: string;
  /** A Standard Webhooks secret (whsec_<base64>). */
  webhookSecret: string;
  webhookSecretFile: string;
  metricsToken: string;
  metricsTokenFile: string;
}

export function reportingSecrets(slackBase: string): ReportingSecrets {
  const dir = mkdtempSync(join(tmpdir(), 'deployer-secrets-'));
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const appKeyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const token = `ghp_${randomBytes(18).toString('base64url')}`;
  const slackUrl = `${slackBase}/services/T0TEST/B0TEST/${randomBytes(12).toString('hex')}`;
  const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const metricsToken = `metrics-${randomBytes(12).toString('hex')}`;
  const file = (name: string, value: string) => {
    const path = join(dir, name);
    writeFileSync(path, `${value}\n`, { mode: 0o600 });
    return path;
  };
  return {
    dir,
    appKeyPem,
    appKeyFile: file('gh_app.pem', appKeyPem.trim()),
    publicKeyPem,
    token,
    tokenFile: file('gh_token', token),
    slackUrl,
    slackUrlFile: file('slack', slackUrl),
    webhookSecret,
    webhookSecretFile: file('webhook_secret', webhookSecret),
    metricsToken,
    metricsTokenFile: file('metrics_token', metricsToken),
  };
}

/** Every secret as text to grep for (the whole value, and the parts that matter). */
export function secretNeedles(s: ReportingSecrets, extra: string[] = []): string[] {
  const keyBody = s.appKeyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
  return [
    s.token,
    s.slackUrl,
    s.slackUrl.split('/').pop()!,
    s.webhookSecret,
    s.webhookSecret.slice('whsec_'.length),
    s.metricsToken,
    // Any 40-character run of the key's base64 body (lines are 64).
    ...keyBody.slice(1, 4),
    ...extra,
  ];
}

/**
 * Verifies a received webhook the way a receiver would: with the Standard Webhooks
 * reference library (npm standardwebhooks), and once more by the spec's algorithm
 * written out here (HMAC-SHA256 of "id.timestamp.body" keyed with the secret's
 * base64-decoded bytes, base64, "v1,"-prefixed). Throws if either disagrees.
 */
export async function verifyStandardWebhook(r: Received, secret: string): Promise<void> {
  const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
  new Webhook(secret).verify(r.body, headers);
  const { createHmac } = await import('node:crypto');
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${r.body}`).digest('base64');
  const given = headers['webhook-signature'].split(' ').map((s) => s.split(',', 2));
  if (!given.some(([v, sig]) => v === 'v1' && sig === expected)) throw new Error('signature does not match the spec computation');
}
