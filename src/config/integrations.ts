import { createPrivateKey } from 'node:crypto';
import Type from 'typebox';
import { parseDuration } from '../lib/duration.ts';
import { Secret } from '../lib/secret.ts';
import type { ConfigIssue } from './load.ts';
import type { GitHubReporting, MetricsConfig, NotifyEvent, NotifyTarget } from './types.ts';

/**
 * Where deploys are reported: GitHub (deployments, check runs or commit statuses), chat
 * and signed webhooks, Prometheus. The schema parts are spread into schema.ts; the
 * resolution is called from load.ts, so the core config files change by a few lines.
 */
const closed = { additionalProperties: false } as const;
const NonEmpty = Type.String({ minLength: 1 });
const Duration = Type.Union([Type.String(), Type.Number({ minimum: 0 })]);

export const NOTIFY_EVENTS = ['started', 'succeeded', 'failed', 'rolled_back', 'timed_out', 'cancelled', 'recovered', 'drift'] as const;
const EventName = Type.Union([...NOTIFY_EVENTS, 'all'].map((e) => Type.Literal(e)));
const ReportKind = Type.Union([Type.Literal('deployments'), Type.Literal('checks')]);
const EnvironmentName = Type.String({ minLength: 1, maxLength: 255 });

/** Keys added to the top-level `github:` block. */
export const GitHubReportFields = {
  apiUrl: Type.Optional(NonEmpty),
  app: Type.Optional(
    Type.Object(
      {
        id: Type.Integer({ minimum: 1 }),
        privateKey: Type.Optional(Type.String()),
        privateKeyFile: Type.Optional(NonEmpty),
        /** Optional: otherwise looked up per repository (GET /repos/{owner}/{repo}/installation). */
        installationId: Type.Optional(Type.Integer({ minimum: 1 })),
      },
      closed,
    ),
  ),
  report: Type.Optional(Type.Array(ReportKind)),
  environment: Type.Optional(EnvironmentName),
};

/** Keys added to each pipeline. */
export const PipelineReportFields = {
  /** The site's public URL: the GitHub deployment's environment_url. */
  publicUrl: Type.Optional(NonEmpty),
  environment: Type.Optional(EnvironmentName),
  github: Type.Optional(Type.Object({ environment: Type.Optional(EnvironmentName), report: Type.Optional(Type.Array(ReportKind)) }, closed)),
};

const TargetCommon = {
  on: Type.Optional(Type.Array(EventName)),
  /** Only these pipelines (default: all). */
  pipelines: Type.Optional(Type.Array(NonEmpty)),
  /** A receiver that does not answer within this is given up on for this attempt. */
  timeout: Type.Optional(Duration),
};

export const NotifySchema = Type.Array(
  Type.Union([
    Type.Object(
      {
        slack: Type.Object({ webhookUrl: Type.Optional(Type.String()), webhookUrlFile: Type.Optional(NonEmpty) }, closed),
        ...TargetCommon,
      },
      closed,
    ),
    Type.Object(
      {
        webhook: Type.Object({ url: NonEmpty, secret: Type.Optional(Type.String()), secretFile: Type.Optional(NonEmpty) }, closed),
        ...TargetCommon,
      },
      closed,
    ),
  ]),
);

export const MetricsSchema = Type.Object({ token: Type.Optional(Type.String()), tokenFile: Type.Optional(NonEmpty) }, closed);

/** Slack's default: what someone on call must hear about. */
const SLACK_DEFAULT_EVENTS: NotifyEvent[] = ['failed', 'rolled_back', 'timed_out', 'recovered', 'drift'];
const DEFAULT_TIMEOUT_MS = 10_000;

type ReadSecret = (obj: Record<string, any>, key: string, path: string, required: boolean) => Secret | undefined;

/** The `github:` reporting keys, resolved. `token` is the one already read for fetching. */
export function resolveGitHubReporting(
  g: Record<string, any>,
  token: Secret | undefined,
  readSecret: ReadSecret,
  issues: ConfigIssue[],
): GitHubReporting {
  const apiUrl = String(g.apiUrl ?? 'https://api.github.com').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(apiUrl)) issues.push({ path: 'github.apiUrl', message: `"${apiUrl}" must be an http(s) URL` });
  let app: GitHubReporting['app'];
  if (g.app) {
    const raw = readSecret(g.app, 'privateKey', 'github.app', true);
    if (raw) {
      try {
        // GitHub hands out PKCS#1 keys; the JWT library wants PKCS#8. Parsing here also
        // turns a wrong file into a config error instead of a failure at the first report.
        const pkcs8 = createPrivateKey(raw.reveal()).export({ type: 'pkcs8', format: 'pem' }).toString();
        app = { id: g.app.id, privateKey: new Secret(pkcs8), installationId: g.app.installationId };
      } catch {
        issues.push({ path: g.app.privateKeyFile !== undefined ? 'github.app.privateKeyFile' : 'github.app.privateKey', message: 'is not a PEM private key' });
      }
    }
  }
  const credentials = app !== undefined || token !== undefined;
  const report = (g.report ?? (credentials ? ['deployments', 'checks'] : [])) as GitHubReporting['report'];
  if (g.report?.length && !credentials && !g.app) {
    issues.push({ path: 'github.report', message: 'needs credentials: github.app (preferred) or github.token' });
  }
  return { apiUrl, webUrl: webUrlOf(apiUrl), app, report: [...new Set(report)], environment: g.environment ?? 'production' };
}

/** api.github.com → github.com; a GitHub Enterprise Server's https://host/api/v3 → https://host. */
export function webUrlOf(apiUrl: string): string {
  if (/^https:\/\/api\.github\.com$/i.test(apiUrl)) return 'https://github.com';
  return apiUrl.replace(/\/api\/v3$/, '');
}

/** A pipeline's reporting keys: its environment (`environment` or `github.environment`), site URL and what to report. */
export function resolvePipelineReporting(
  p: Record<string, any>,
  path: string,
  github: GitHubReporting,
  issues: ConfigIssue[],
): { environment: string; publicUrl: string | undefined; report: GitHubReporting['report'] } {
  if (p.environment !== undefined && p.github?.environment !== undefined) {
    issues.push({ path: `${path}.environment`, message: 'give either environment or github.environment, not both' });
  }
  const publicUrl = p.publicUrl === undefined ? undefined : String(p.publicUrl).replace(/\/+$/, '');
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+/.test(publicUrl)) issues.push({ path: `${path}.publicUrl`, message: `"${publicUrl}" must be an http(s) URL` });
  const report = (p.github?.report ?? github.report) as GitHubReporting['report'];
  if (p.github?.report?.length && !github.app && github.report.length === 0) {
    issues.push({ path: `${path}.github.report`, message: 'needs credentials: github.app (preferred) or github.token' });
  }
  return { environment: p.environment ?? p.github?.environment ?? github.environment, publicUrl, report: [...new Set(report)] };
}

export function resolveNotify(list: Record<string, any>[], pipelineNames: string[], readSecret: ReadSecret, issues: ConfigIssue[]): NotifyTarget[] {
  const targets: NotifyTarget[] = [];
  list.forEach((t, i) => {
    const path = `notify[${i}]`;
    const on = expandEvents(t.on, t.slack ? SLACK_DEFAULT_EVENTS : [...NOTIFY_EVENTS]);
    for (const name of t.pipelines ?? []) {
      if (!pipelineNames.includes(name)) issues.push({ path: `${path}.pipelines`, message: `no pipeline "${name}"` });
    }
    let timeoutMs = DEFAULT_TIMEOUT_MS;
    if (t.timeout !== undefined) {
      const ms = parseDuration(t.timeout);
      if (ms === undefined || ms <= 0 || ms > 120_000) issues.push({ path: `${path}.timeout`, message: `"${t.timeout}" is not a duration up to 2m (e.g. 10s)` });
      else timeoutMs = ms;
    }
    const common = { index: i, on, pipelines: t.pipelines, timeoutMs };
    if (t.slack) {
      const url = readSecret(t.slack, 'webhookUrl', `${path}.slack`, true);
      if (url && !isHttpUrl(url.reveal())) {
        // The URL is the secret: the message must not repeat it.
        issues.push({ path: `${path}.slack.webhookUrl`, message: 'is not an http(s) URL' });
        return;
      }
      if (url) targets.push({ kind: 'slack', webhookUrl: url, ...common });
      return;
    }
    const url = String(t.webhook?.url ?? '');
    if (!isHttpUrl(url)) issues.push({ path: `${path}.webhook.url`, message: `"${url}" is not an http(s) URL` });
    const secret = readSecret(t.webhook ?? {}, 'secret', `${path}.webhook`, true);
    if (secret && !isStandardWebhookSecret(secret.reveal())) {
      issues.push({ path: `${path}.webhook.secret`, message: 'must be whsec_ followed by base64 of 24 to 64 random bytes (Standard Webhooks), e.g. from `echo whsec_$(openssl rand -base64 32)`' });
      return;
    }
    if (secret && isHttpUrl(url)) targets.push({ kind: 'webhook', url, secret, ...common });
  });
  return targets;
}

export function resolveMetrics(m: Record<string, any> | undefined, readSecret: ReadSecret, issues: ConfigIssue[]): MetricsConfig {
  const token = readSecret(m ?? {}, 'token', 'metrics', false);
  if (token && token.reveal().length < 16) issues.push({ path: 'metrics.token', message: 'must be at least 16 characters' });
  return { token };
}

function expandEvents(on: string[] | undefined, fallback: NotifyEvent[]): NotifyEvent[] {
  if (!on || on.length === 0) return fallback;
  if (on.includes('all')) return [...NOTIFY_EVENTS];
  return [...new Set(on as NotifyEvent[])];
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/** `whsec_` + base64 of the key (Standard Webhooks); the key must be 24–64 bytes. */
export function isStandardWebhookSecret(text: string): boolean {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!m) return false;
  const bytes = Buffer.from(m[1]!, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}
