import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';

export const WEBHOOK_SECRET = `whsec-${randomBytes(8).toString('hex')}`;
export const ADMIN_TOKEN = `admin-${randomBytes(12).toString('hex')}`;

/** The header every request to a daemon's pages, API or event streams carries (auth.public is false). */
export const AUTH_HEADER = { authorization: `Bearer ${ADMIN_TOKEN}` } as const;
/** `fetch(url, AUTH)`: a GET as the admin token. */
export const AUTH: RequestInit = { headers: AUTH_HEADER };

/** The environment a child `bin/deployer` needs to resolve the config's ${VAR}s. */
export function testEnv(registryPassword = 'unused'): NodeJS.ProcessEnv {
  return { ...process.env, GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET, DEPLOYER_ADMIN_TOKEN: ADMIN_TOKEN, REGISTRY_PASSWORD: registryPassword };
}

export interface TestPipeline {
  name: string;
  repo: string;
  url?: string;
  branch?: string;
  image: string;
  tag?: string;
  services?: string[];
  /** As written in YAML; nested blocks (verify, probe) as objects. */
  deploy?: Record<string, unknown>;
  /** `onFailure` (stop | previous-good-push). */
  onFailure?: string;
  /** The pipeline's `retention:` block. */
  retention?: Record<string, unknown>;
  timeouts?: Record<string, string>;
  cancelSuperseded?: boolean;
  /** Default false: tests never poll github.com (no network, and no traffic off this machine). */
  poll?: string | false;
  /** The pipeline's `build:` block, as written in YAML (e.g. `{ builder: 'classic' }`). */
  build?: Record<string, unknown>;
  /** More YAML lines of this pipeline (indented by the caller as a pipeline key, e.g. "    publicUrl: …"). */
  extra?: string;
}

/**
 * A real config file's text, parsed like the daemon parses it, with a fresh data dir
 * and Redis prefix so tests never see each other's queues or runs.
 */
export function testConfig(opts: { pipelines: TestPipeline[]; authYaml?: string; extraYaml?: string; publicUrl?: string; registry?: { host: string; username: string; password: string }; redisUrl?: string; dockerHost?: string; logLevel?: string; listen?: string; redisPrefix?: string; concurrency?: number; instance?: string; driftInterval?: string; deadAfter?: string; moreRegistries?: { host: string; username: string; password: string }[]; githubExtra?: string; extra?: string; env?: Record<string, string> }): Config {
  const dir = mkdtempSync(join(tmpdir(), 'deployer-test-'));
  const env = {
    // What the deployer passes on to git and ssh (src/config/environment.ts), as a real process would.
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK,
    GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
    DEPLOYER_ADMIN_TOKEN: ADMIN_TOKEN,
    REGISTRY_PASSWORD: opts.registry?.password ?? 'unused',
    // Extra variables the config may name (e.g. build secrets given as { env: NAME }).
    ...opts.env,
  };
  const pipelines = opts.pipelines
    .map((p) => {
      const lines = [`  - name: ${p.name}`, `    repo: ${p.repo}`, `    image: ${p.image}`, `    services: ${JSON.stringify(p.services ?? [])}`];
      if (p.url) lines.push(`    url: ${p.url}`);
      if (p.branch) lines.push(`    branch: ${p.branch}`);
      if (p.tag) lines.push(`    tag: ${p.tag}`);
      if (p.deploy) lines.push(`    deploy: ${JSON.stringify(p.deploy)}`);
      if (p.timeouts) lines.push(`    timeouts: ${JSON.stringify(p.timeouts)}`);
      lines.push(`    poll: ${p.poll ?? false}`);
      if (p.cancelSuperseded !== undefined) lines.push(`    cancelSuperseded: ${p.cancelSuperseded}`);
      if (p.build) lines.push(`    build: ${JSON.stringify(p.build)}`);
      if (p.onFailure) lines.push(`    onFailure: ${p.onFailure}`);
      if (p.retention) lines.push(`    retention: ${JSON.stringify(p.retention)}`);
      if (p.extra) lines.push(p.extra);
      return lines.join('\n');
    })
    .join('\n');
  const text = `listen: ${opts.listen ?? '127.0.0.1:0'}
dataDir: ${dir}/data
redis: ${opts.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'}
redisPrefix: ${opts.redisPrefix ?? `test-${randomBytes(6).toString('hex')}`}
logLevel: ${opts.logLevel ?? process.env.TEST_LOG_LEVEL ?? 'silent'}
worker:
  concurrency: ${opts.concurrency ?? 2}
driftInterval: ${opts.driftInterval ?? '60s'}${opts.instance ? `\ninstance: ${opts.instance}` : ''}
github:
  webhookSecret: \${GITHUB_WEBHOOK_SECRET}
${opts.githubExtra ? `${opts.githubExtra}\n` : ''}auth:
  adminToken: \${DEPLOYER_ADMIN_TOKEN}
${opts.authYaml ?? ''}${opts.publicUrl ? `publicUrl: ${opts.publicUrl}\n` : ''}${opts.extraYaml ?? ''}docker:
  host: ${opts.dockerHost ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'}
${opts.registry ? `registries:\n  - host: ${opts.registry.host}\n    username: ${opts.registry.username}\n    password: \${REGISTRY_PASSWORD}\n` : ''}${(opts.moreRegistries ?? []).map((r) => `${opts.registry ? '' : 'registries:\n'}  - host: ${r.host}\n    username: ${r.username}\n    password: ${r.password}\n`).join('')}${opts.extra ? `${opts.extra}\n` : ''}pipelines:
${pipelines}
`;
  // Written out too, so tests can start bin/deployer on the very same file.
  writeFileSync(join(dir, 'deployer.yaml'), text);
  return parseConfig(text, join(dir, 'deployer.yaml'), env);
}
