import Type from 'typebox';
import { parseDuration } from '../lib/duration.ts';
import type { ConfigIssue } from './load.ts';

/**
 * Config for deploys verified where users are (issue #15): edge verification
 * (`deploy.verify`), the downtime probe (`deploy.probe`), what to do after a failed
 * burst (`onFailure`), how many deployments' images stay protected
 * (`retention.protect`) and how often their manifests are checked in the registry
 * (`rollbackCheckInterval`). Schemas and resolution live here so the shared
 * load.ts/schema.ts stay small.
 */

/** After the rollout converges, request `url` until the response shows the new commit. */
export interface EdgeVerifySettings {
  url: string;
  /**
   * Every given condition must hold. body: the body contains this text, with `{commit}`
   * replaced by the full sha; header: that response header's value contains the sha;
   * status: the response has this status (default when only body/header is given: 2xx).
   */
  expect: { body?: string | undefined; header?: string | undefined; status?: number | undefined };
  /** How long to keep asking before the run rolls back. */
  timeoutMs: number;
  /** Pause between two requests. */
  intervalMs: number;
  /** Per request. */
  requestTimeoutMs: number;
}

/** Light traffic sent to `url` during the rollout; `maxFailed` turns failures into a rollback. */
export interface ProbeSettings {
  url: string;
  /** Requests per second, sent on a fixed schedule whatever the answers take. */
  ratePerSecond: number;
  /** More failed requests than this roll the deploy back; undefined: only recorded. */
  maxFailed: number | undefined;
  /** A request without an answer after this long counts as failed. */
  requestTimeoutMs: number;
}

export type OnFailure = 'stop' | 'previous-good-push';

export interface VerifiedDeploySettings {
  verify: EdgeVerifySettings | undefined;
  probe: ProbeSettings | undefined;
  onFailure: OnFailure;
  /** Images of this many most recent deployments are never pruned and are watched in the registry. */
  protect: number;
}

export const DEFAULT_VERIFY = { timeoutMs: 60_000, intervalMs: 1_000, requestTimeoutMs: 10_000 } as const;
export const DEFAULT_PROBE = { ratePerSecond: 20, requestTimeoutMs: 5_000 } as const;
export const DEFAULT_PROTECT = 5;
export const DEFAULT_ROLLBACK_CHECK_MS = 60 * 60_000;
/** "Light traffic": a probe is not a load test. */
export const MAX_PROBE_RATE = 100;

const closed = { additionalProperties: false } as const;
const Duration = Type.Union([Type.String(), Type.Number({ minimum: 0 })]);
const NonEmpty = Type.String({ minLength: 1 });

export const EdgeVerifySchema = Type.Object(
  {
    url: NonEmpty,
    expect: Type.Object(
      {
        body: Type.Optional(NonEmpty),
        header: Type.Optional(NonEmpty),
        status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
      },
      closed,
    ),
    timeout: Type.Optional(Duration),
    interval: Type.Optional(Duration),
    requestTimeout: Type.Optional(Duration),
  },
  closed,
);

export const ProbeSchema = Type.Object(
  {
    url: Type.Optional(NonEmpty),
    rate: Type.Optional(Type.Union([Type.String(), Type.Number()])),
    maxFailed: Type.Optional(Type.Integer({ minimum: 0 })),
    requestTimeout: Type.Optional(Duration),
  },
  closed,
);

export const OnFailureSchema = Type.Union([Type.Literal('stop'), Type.Literal('previous-good-push')]);

/** RFC 9110 token: what a header name may be. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Resolves one pipeline's keys (`p` is the pipeline as written); problems go to `issues`. */
export function resolveVerified(p: Record<string, any>, path: string, issues: ConfigIssue[]): VerifiedDeploySettings {
  const verify = p.deploy?.verify === undefined ? undefined : resolveVerify(p.deploy.verify, `${path}.deploy.verify`, issues);
  const probe = p.deploy?.probe === undefined ? undefined : resolveProbe(p.deploy.probe, verify, `${path}.deploy.probe`, issues);
  const protect = p.retention?.protect ?? DEFAULT_PROTECT;
  if (!Number.isInteger(protect) || protect < 1) issues.push({ path: `${path}.retention.protect`, message: 'must be a whole number of at least 1' });
  return { verify, probe, onFailure: p.onFailure ?? 'stop', protect };
}

/**
 * How much longer a deploy stage may take by default with these checks: the edge is
 * asked after the rollout and again after a rollback; the probe runs a few seconds past
 * the rollout and waits for its last answers.
 */
export function verifiedDeployExtraMs(v: Pick<VerifiedDeploySettings, 'verify' | 'probe'>): number {
  return (v.verify ? 2 * v.verify.timeoutMs : 0) + (v.probe ? 3_000 + v.probe.requestTimeoutMs : 0);
}

/** Top-level `rollbackCheckInterval`: how often rollback targets' manifests are checked (ms; 0 = never). */
export function resolveRollbackCheck(value: unknown, issues: ConfigIssue[]): number {
  if (value === undefined) return DEFAULT_ROLLBACK_CHECK_MS;
  if (value === false) return 0;
  return positiveDuration(value, DEFAULT_ROLLBACK_CHECK_MS, 'rollbackCheckInterval', issues);
}

function resolveVerify(v: Record<string, any>, path: string, issues: ConfigIssue[]): EdgeVerifySettings {
  checkUrl(v.url, `${path}.url`, issues);
  const expect = (v.expect ?? {}) as EdgeVerifySettings['expect'];
  if (expect.body === undefined && expect.header === undefined && expect.status === undefined) {
    issues.push({ path: `${path}.expect`, message: 'give at least one of body ("…{commit}…"), header (a header whose value carries the commit) or status' });
  }
  if (expect.header !== undefined && !HEADER_NAME.test(expect.header)) {
    issues.push({ path: `${path}.expect.header`, message: `"${expect.header}" is not a valid header name` });
  }
  const timeoutMs = positiveDuration(v.timeout, DEFAULT_VERIFY.timeoutMs, `${path}.timeout`, issues);
  const intervalMs = positiveDuration(v.interval, DEFAULT_VERIFY.intervalMs, `${path}.interval`, issues);
  const requestTimeoutMs = positiveDuration(v.requestTimeout, DEFAULT_VERIFY.requestTimeoutMs, `${path}.requestTimeout`, issues);
  if (intervalMs >= timeoutMs) issues.push({ path: `${path}.interval`, message: 'must be shorter than the timeout' });
  return { url: v.url, expect: { body: expect.body, header: expect.header, status: expect.status }, timeoutMs, intervalMs, requestTimeoutMs };
}

function resolveProbe(v: Record<string, any>, verify: EdgeVerifySettings | undefined, path: string, issues: ConfigIssue[]): ProbeSettings {
  // The page verified after the rollout is the natural one to watch during it.
  const url: string | undefined = v.url ?? verify?.url;
  if (url === undefined) issues.push({ path: `${path}.url`, message: 'is required (or set deploy.verify.url)' });
  else checkUrl(url, `${path}.url`, issues);
  let ratePerSecond: number = DEFAULT_PROBE.ratePerSecond;
  if (v.rate !== undefined) {
    const rate = parseRate(v.rate);
    if (rate === undefined || rate <= 0 || rate > MAX_PROBE_RATE) {
      issues.push({ path: `${path}.rate`, message: `"${v.rate}" is not a rate between 0 and ${MAX_PROBE_RATE}/s (e.g. 20/s, 300/m)` });
    } else ratePerSecond = rate;
  }
  const requestTimeoutMs = positiveDuration(v.requestTimeout, DEFAULT_PROBE.requestTimeoutMs, `${path}.requestTimeout`, issues);
  return { url: url ?? '', ratePerSecond, maxFailed: v.maxFailed, requestTimeoutMs };
}

/** "20/s", "300/m", "20" or 20 (per second) → requests per second. */
export function parseRate(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) ? input : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(?:\/\s*(s|m|min))?$/.exec(input.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'm' || m[2] === 'min' ? n / 60 : n;
}

function checkUrl(url: string, path: string, issues: ConfigIssue[]): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    issues.push({ path, message: `"${url}" is not a URL` });
    return;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') issues.push({ path, message: 'must be an http:// or https:// URL' });
  // Credentials in the URL would be logged with every verification line.
  if (parsed.username || parsed.password) issues.push({ path, message: 'must not contain credentials' });
  // Likewise a query string (health endpoints often take a token there): the URL is
  // logged, stored on the run and shown on its page.
  if (parsed.search) issues.push({ path, message: 'must not contain a query string (the URL is logged and shown on every run); verify a path instead' });
}

function positiveDuration(value: unknown, fallback: number, path: string, issues: ConfigIssue[]): number {
  if (value === undefined) return fallback;
  const ms = typeof value === 'string' || typeof value === 'number' ? parseDuration(value) : undefined;
  if (ms === undefined || ms <= 0) {
    issues.push({ path, message: `"${String(value)}" is not a duration (e.g. 30s, 5m, 500ms)` });
    return fallback;
  }
  return ms;
}
