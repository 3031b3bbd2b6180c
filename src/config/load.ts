import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import Value from 'typebox/value';
import { parseDocument } from 'yaml';
import { parseDuration, parseSize } from '../lib/duration.ts';
import { Secret } from '../lib/secret.ts';
import { resolveAuth, resolveTrustProxy } from './auth.ts';
import { resolveBuild } from './build.ts';
import { hostEnvironment } from './environment.ts';
import { httpSettings } from './http.ts';
import { isValidTag, parseImageName } from './image-ref.ts';
import { resolveGitHubReporting, resolveMetrics, resolveNotify, resolvePipelineReporting } from './integrations.ts';
import { ConfigSchema } from './schema.ts';
import { resolveRollbackCheck, resolveVerified, verifiedDeployExtraMs } from './verify.ts';
import type { Config, DeploySettings, DockerEndpoint, PipelineConfig, RegistryConfig, ServiceTarget } from './types.ts';

export interface ConfigIssue {
  /** Key path in the file, e.g. "pipelines[0].image"; "" for the whole file. */
  path: string;
  message: string;
}

/** Every problem found in a config file, not just the first. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  readonly issues: ConfigIssue[];
  constructor(file: string, issues: ConfigIssue[]) {
    super(`${file}: ${issues.length} error(s)\n${issues.map((i) => `  ${i.path || '(file)'}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export const DEFAULT_DEPLOY: DeploySettings = {
  order: 'start-first',
  monitorMs: 5_000,
  timeoutMs: 5 * 60_000,
  failureAction: 'rollback',
};

type Env = Record<string, string | undefined>;

/** Reads, substitutes, validates and resolves a config file. Throws ConfigError. */
export function loadConfig(file: string, env: Env = process.env): Config {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(abs, [{ path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? err}` }]);
  }
  return parseConfig(text, abs, env);
}

export function parseConfig(text: string, file: string, env: Env): Config {
  const issues: ConfigIssue[] = [];
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` })));
  }
  const raw = substitute(doc.toJS() ?? {}, '', env, issues);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: '', message: 'must be a YAML mapping' }]);
  }
  for (const e of Value.Errors(ConfigSchema, raw)) {
    if (e.keyword === 'boolean') continue; // duplicate of the additionalProperties error
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      for (const k of extra) issues.push({ path: joinPath(pointerToPath(e.instancePath), k), message: 'unknown key' });
      continue;
    }
    if (e.keyword === 'required') {
      const missing = (e.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      for (const k of missing) issues.push({ path: joinPath(pointerToPath(e.instancePath), k), message: 'is required' });
      continue;
    }
    if (e.keyword === 'anyOf' && issues.some((i) => i.path.startsWith(pointerToPath(e.instancePath)))) continue;
    issues.push({ path: pointerToPath(e.instancePath), message: e.message });
  }
  const schemaIssues = issues.length;
  try {
    return resolveConfig(raw as Record<string, any>, file, issues, env);
  } catch (err) {
    // With schema errors the semantic pass may trip over a wrong shape; what it found
    // until then is still reported, with the schema errors.
    if (schemaIssues === 0 || err instanceof ConfigError) throw err;
    throw new ConfigError(file, dedupe(issues));
  }
}

function resolveConfig(c: Record<string, any>, file: string, issues: ConfigIssue[], env: Env): Config {
  const base = dirname(file);
  const readSecret = (obj: Record<string, any>, key: string, path: string, required: boolean) =>
    secretField(obj, key, path, required, base, issues);

  const webhookSecret = readSecret(c.github ?? {}, 'webhookSecret', 'github', true);
  const token = readSecret(c.github ?? {}, 'token', 'github', false);
  const auth = resolveAuth(c.auth, { readSecret, duration: (v, fallback, path) => durationOr(v, fallback, path, issues), issues });
  const trustProxy = resolveTrustProxy(c.trustProxy, issues);
  const reporting = resolveGitHubReporting(c.github ?? {}, token, readSecret, issues);

  const listen = parseListen(c.listen ?? '127.0.0.1:8090');
  if (!listen) issues.push({ path: 'listen', message: 'must be HOST:PORT, e.g. 127.0.0.1:8090' });

  const registries: RegistryConfig[] = [];
  (c.registries ?? []).forEach((r: Record<string, any>, i: number) => {
    const path = `registries[${i}]`;
    if (registries.some((x) => x.host === r.host)) issues.push({ path: `${path}.host`, message: `duplicate registry "${r.host}"` });
    const password = readSecret(r, 'password', path, false);
    if ((r.username === undefined) !== (password === undefined)) {
      issues.push({ path, message: 'username and password must be given together' });
    }
    registries.push({ host: r.host, username: r.username, password });
  });

  const defaultDocker = endpointOf(c.docker ?? {}, 'docker', base, issues);
  // Services without an engine of their own are updated through the manager endpoint.
  const manager = c.docker?.manager ? endpointOf(c.docker.manager, 'docker.manager', base, issues) : defaultDocker;
  const pipelines: PipelineConfig[] = [];
  ((c.pipelines ?? []) as Record<string, any>[]).forEach((p, i) => {
    const path = `pipelines[${i}]`;
    if (pipelines.some((x) => x.name === p.name)) issues.push({ path: `${path}.name`, message: `duplicate pipeline name "${p.name}"` });
    const image = parseImageName(p.image);
    if (typeof image === 'string') issues.push({ path: `${path}.image`, message: `"${p.image}" ${image}` });
    const tag = p.tag ?? 'latest';
    if (!isValidTag(tag)) issues.push({ path: `${path}.tag`, message: `"${tag}" is not a valid image tag` });
    const url = p.url ?? `https://github.com/${p.repo}.git`;
    if (!/^(file|https?|ssh):\/\//.test(url) && !isAbsolute(url)) {
      issues.push({ path: `${path}.url`, message: 'must be a file://, https://, http:// or ssh:// URL' });
    }
    const seen = new Set<string>();
    const targets: ServiceTarget[] = [];
    (p.services as (string | { name: string; docker?: Record<string, any> })[]).forEach((entry, j) => {
      const s = typeof entry === 'string' ? entry : entry.name;
      const docker = typeof entry === 'string' || !entry.docker ? manager : endpointOf(entry.docker, `${path}.services[${j}].docker`, base, issues);
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s)) issues.push({ path: `${path}.services[${j}]`, message: `"${s}" is not a valid service name` });
      if (seen.has(s)) issues.push({ path: `${path}.services[${j}]`, message: `duplicate service "${s}"` });
      // Two pipelines updating one service would fight over it.
      const owner = pipelines.find((other) => other.targets.some((t) => t.service === s && t.docker.host === docker.host));
      if (owner) issues.push({ path: `${path}.services[${j}]`, message: `service "${s}" is already deployed by pipeline "${owner.name}"` });
      seen.add(s);
      targets.push({ service: s, docker });
    });
    const verified = resolveVerified(p, path, issues);
    const deploy = deploySettings(p.deploy ?? {}, `${path}.deploy`, issues);
    pipelines.push({
      name: p.name,
      repo: p.repo,
      url,
      branch: p.branch ?? 'main',
      build: resolveBuild(p.build, { path, base, env, image: p.image, tag }, issues),
      image: p.image,
      registry: typeof image === 'string' ? '' : image.registry,
      tag,
      services: targets.map((t) => t.service),
      targets,
      deploy,
      timeouts: {
        fetch: durationOr(p.timeouts?.fetch, DEFAULT_TIMEOUTS.fetch, `${path}.timeouts.fetch`, issues),
        build: durationOr(p.timeouts?.build, DEFAULT_TIMEOUTS.build, `${path}.timeouts.build`, issues),
        push: durationOr(p.timeouts?.push, DEFAULT_TIMEOUTS.push, `${path}.timeouts.push`, issues),
        // The rollout's own timeout, plus time for swarm to roll back afterwards.
        // Room for edge verification after the rollout and again after a rollback, and the probe's tail.
        deploy: durationOr(p.timeouts?.deploy, deploy.timeoutMs + 2 * 60_000 + verifiedDeployExtraMs(verified), `${path}.timeouts.deploy`, issues),
      },
      cancelSuperseded: p.cancelSuperseded ?? false,
      retention: {
        runs: p.retention?.runs ?? DEFAULT_RETENTION.runs,
        ageMs: durationOr(p.retention?.age, DEFAULT_RETENTION.ageMs, `${path}.retention.age`, issues),
        logBytes: sizeOr(p.retention?.logSize, DEFAULT_RETENTION.logBytes, `${path}.retention.logSize`, issues),
        images: p.retention?.images ?? DEFAULT_RETENTION.images,
        protect: verified.protect,
      },
      verify: verified.verify,
      probe: verified.probe,
      onFailure: verified.onFailure,
      pollMs: p.poll === false ? 0 : durationOr(p.poll, DEFAULT_POLL_MS, `${path}.poll`, issues),
      ...resolvePipelineReporting(p, path, reporting, issues),
    });
  });

  const rollbackCheckIntervalMs = resolveRollbackCheck(c.rollbackCheckInterval, issues);
  const notify = resolveNotify(c.notify ?? [], pipelines.map((p) => p.name), readSecret, issues);
  const metrics = resolveMetrics(c.metrics, readSecret, issues);
  // Resolved before the check below, so that their errors are reported too.
  const driftIntervalMs = durationOr(c.driftInterval, 60_000, 'driftInterval', issues);
  const deadAfterMs = durationOr(c.worker?.deadAfter, 30_000, 'worker.deadAfter', issues);
  const http = httpSettings(c.http, issues);
  if (issues.length > 0 || !webhookSecret || !listen) throw new ConfigError(file, dedupe(issues));
  const dataDir = resolve(base, c.dataDir ?? './data');
  return {
    file,
    listen,
    publicUrl: (c.publicUrl ?? `http://${c.listen ?? '127.0.0.1:8090'}`).replace(/\/+$/, ''),
    dataDir,
    redisUrl: c.redis ?? 'redis://127.0.0.1:6379',
    redisPrefix: c.redisPrefix ?? 'deployer',
    logLevel: c.logLevel ?? 'info',
    github: { webhookSecret, token, ...reporting },
    auth,
    trustProxy,
    docker: defaultDocker,
    manager,
    instance: c.instance ?? (c.publicUrl ?? `http://${c.listen ?? '127.0.0.1:8090'}`).replace(/\/+$/, ''),
    driftIntervalMs,
    rollbackCheckIntervalMs,
    http,
    registries,
    worker: { concurrency: c.worker?.concurrency ?? 2, deadAfterMs },
    pipelines,
    notify,
    metrics,
    environment: hostEnvironment(env),
  };
}

export const DEFAULT_TIMEOUTS = { fetch: 10 * 60_000, build: 60 * 60_000, push: 20 * 60_000 } as const;
export const DEFAULT_POLL_MS = 5 * 60_000;
export const DEFAULT_RETENTION = { runs: 500, ageMs: 90 * 86_400_000, logBytes: 10 * 1024 * 1024, images: 5 } as const;

function sizeOr(value: string | number | undefined, fallback: number, path: string, issues: ConfigIssue[]): number {
  if (value === undefined) return fallback;
  const bytes = parseSize(value);
  if (bytes === undefined || bytes < 1024) {
    issues.push({ path, message: `"${value}" is not a size of at least 1KB (e.g. 512KB, 10MB)` });
    return fallback;
  }
  return bytes;
}

function durationOr(value: string | number | undefined, fallback: number, path: string, issues: ConfigIssue[]): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    issues.push({ path, message: `"${value}" is not a duration (e.g. 30s, 5m, 500ms)` });
    return fallback;
  }
  return ms;
}

function endpointOf(d: Record<string, any>, path: string, base: string, issues: ConfigIssue[]): DockerEndpoint {
  const host: string = d.host ?? 'unix:///var/run/docker.sock';
  if (!/^(unix:\/\/\/|tcp:\/\/|ssh:\/\/)/.test(host)) issues.push({ path: `${path}.host`, message: `"${host}" must start with unix:///, tcp:// or ssh://` });
  if (d.tls && !host.startsWith('tcp://')) issues.push({ path: `${path}.tls`, message: 'TLS files apply to tcp:// hosts only' });
  const tls = d.tls ? { ca: resolve(base, d.tls.ca), cert: resolve(base, d.tls.cert), key: resolve(base, d.tls.key) } : undefined;
  return { host, tls };
}

function deploySettings(d: Record<string, any>, path: string, issues: ConfigIssue[]): DeploySettings {
  const duration = (key: 'monitor' | 'timeout', fallback: number): number => {
    if (d[key] === undefined) return fallback;
    const ms = parseDuration(d[key]);
    if (ms === undefined) {
      issues.push({ path: `${path}.${key}`, message: `"${d[key]}" is not a duration (e.g. 30s, 5m, 500ms)` });
      return fallback;
    }
    return ms;
  };
  const settings: DeploySettings = {
    order: d.order ?? DEFAULT_DEPLOY.order,
    monitorMs: duration('monitor', DEFAULT_DEPLOY.monitorMs),
    timeoutMs: duration('timeout', DEFAULT_DEPLOY.timeoutMs),
    failureAction: d.failureAction ?? DEFAULT_DEPLOY.failureAction,
  };
  if (settings.timeoutMs <= settings.monitorMs) {
    issues.push({ path: `${path}.timeout`, message: 'must be longer than the monitor window' });
  }
  return settings;
}

/** `key` or `keyFile` (read from disk, as Docker secrets are), never both. */
function secretField(
  obj: Record<string, any>,
  key: string,
  path: string,
  required: boolean,
  base: string,
  issues: ConfigIssue[],
): Secret | undefined {
  const inline = obj[key] as string | undefined;
  const fileKey = `${key}File`;
  const file = obj[fileKey] as string | undefined;
  if (inline !== undefined && file !== undefined) {
    issues.push({ path: `${path}.${key}`, message: `give either ${key} or ${fileKey}, not both` });
    return undefined;
  }
  if (file !== undefined) {
    try {
      const value = readFileSync(resolve(base, file), 'utf8').replace(/\r?\n$/, '');
      if (value.length === 0) {
        issues.push({ path: `${path}.${fileKey}`, message: `file "${file}" is empty` });
        return undefined;
      }
      return new Secret(value);
    } catch (err) {
      issues.push({ path: `${path}.${fileKey}`, message: `cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? err}` });
      return undefined;
    }
  }
  if (inline === undefined || inline === '') {
    if (required) issues.push({ path: `${path}.${key}`, message: `is required (or ${fileKey})` });
    return undefined;
  }
  return new Secret(inline);
}

/** Replaces ${VAR} in every string of the tree; "$${" stays a literal "${". */
function substitute(node: unknown, path: string, env: Env, issues: ConfigIssue[]): unknown {
  if (typeof node === 'string') {
    return node.replace(/\$(\$?)\{([^}]*)\}/g, (whole, escape: string, name: string) => {
      if (escape) return whole.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        issues.push({ path, message: `"\${${name}}" is not a valid variable reference` });
        return '';
      }
      const value = env[name];
      if (value === undefined || value === '') {
        issues.push({ path, message: `environment variable ${name} is not set` });
        return whole; // keep the text so no second error cascades from an empty value
      }
      return value;
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => substitute(v, `${path}[${i}]`, env, issues));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = substitute(v, joinPath(path, k), env, issues);
    return out;
  }
  return node;
}

function parseListen(listen: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function pointerToPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : joinPath(acc, seg)), '');
}

function joinPath(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.path}\u0000${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
