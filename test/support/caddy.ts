// The real site's front door, as a swarm fixture: Caddy published in host mode
// (ingress/VIPs need IPVS, absent on this kernel), proxying to the `www`
// service by its dnsrr name over an attachable overlay. Plus a bounded load
// generator that records every answer the proxy gives.
//
// No base image can be pulled here, so the image is built FROM scratch around
// Debian's dynamically linked `caddy` (2.6): the binary, the shared objects
// `ldd` lists (libc, libzstd, ld-linux) and a Caddyfile.
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Docker from 'dockerode';
import { freePort } from '../helpers/process.ts';
import { baseEnv, run, sleep } from './exec.ts';
import type { TestRegistry } from './registry.ts';
import { buildAndPushDir, dockerCli, removeTestResources, TEST_LABEL } from './swarm.ts';
import type { PushedImage } from './swarm.ts';

const LABEL_FILTER = `${TEST_LABEL}=1`;
const docker = new Docker(); // honours DOCKER_HOST=unix://…
/** Caddy's port inside its container. */
const CADDY_PORT = 80;

/**
 * `reverse_proxy` options for a proxy that also rides out a moment with NO task
 * in DNS. Measured on this engine (docs/docker-notes.md, "Zero downtime through
 * Caddy"; zero-downtime.test.ts):
 * - keep the upstream the service NAME (never `dynamic a` with its default 1 m
 *   `refresh`): Caddy dials the name and Go resolves it on every dial, so a task
 *   leaves the rotation when swarm drops it from DNS, 2 s before signalling it.
 *   `dynamic a` kept dialling the dead task: 168 failures in 3 updates;
 * - `lb_try_duration` + `lb_try_interval`: a failed dial (no such host, refused,
 *   timeout) is retried, re-resolving, instead of answering 502. Not needed for
 *   start-first deploys (the plain `reverse_proxy www:8080` also had 0 failures),
 *   but with stop-first it turned ~390 502s per 5 deploys into waits (3.4–3.8 s),
 *   except the few that waited longer than the try duration;
 * - `dial_timeout 1s` (default 3 s; it includes the DNS lookup): while no task
 *   exists, Docker's embedded DNS forwards the name to the host's resolvers, and
 *   here that lookup often timed out ("i/o timeout"); a short one re-resolves sooner;
 * - `keepalive off`: no pooled connection can outlive its task's DNS entry. A
 *   precaution for keep-alive upstreams (OCaml.org's server); busybox httpd sends
 *   `Connection: close` anyway, so it changes nothing measurable here.
 */
export const ZERO_DOWNTIME_PROXY = [
  'lb_try_duration 5s',
  'lb_try_interval 100ms',
  'transport http {',
  '\tdial_timeout 1s',
  '\tkeepalive off',
  '}',
];

/**
 * `admin off` (no admin endpoint on :2019), `auto_https off`
 * (plain HTTP on :80, no ACME), upstream from the `UPSTREAM` environment
 * variable so one image serves any `www` service name.
 */
export function caddyfile(proxyOptions: string[] = ZERO_DOWNTIME_PROXY, siteDirectives: string[] = []): string {
  const inner = proxyOptions.map((l) => `\t\t${l}`).join('\n');
  return [
    '{',
    '\tadmin off',
    '\tauto_https off',
    '}',
    `:${CADDY_PORT} {`,
    ...siteDirectives.map((l) => `\t${l}`),
    proxyOptions.length > 0 ? `\treverse_proxy {$UPSTREAM} {\n${inner}\n\t}` : '\treverse_proxy {$UPSTREAM}',
    '}',
    '',
  ].join('\n');
}

/** Absolute paths of the shared objects a dynamic binary needs, from `ldd`. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const out = await run('ldd', [binary], { env: baseEnv() });
  // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)";
  // linux-vdso has no file.
  const paths = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1]) paths.add(m[1]);
  }
  if (paths.size === 0) throw new Error(`ldd ${binary} listed no libraries: ${out}`);
  return [...paths];
}

/** Where Debian's `caddy` is, or a clear error naming the package. */
export async function caddyBinary(): Promise<string> {
  try {
    return (await run('sh', ['-c', 'command -v caddy'], { env: baseEnv() })).trim();
  } catch {
    throw new Error('caddy is not installed: apt-get install -y caddy (scripts/provision.sh does)');
  }
}

/**
 * Builds a FROM scratch Caddy image (binary + its shared objects, copied as
 * real files: the ldd paths are often symlinks) and pushes it.
 */
export async function buildAndPushCaddy(
  registry: TestRegistry,
  repoName: string,
  proxyOptions: string[] = ZERO_DOWNTIME_PROXY,
  /** Extra directives in the site block, e.g. `log` for an access log on stderr. */
  siteDirectives: string[] = [],
): Promise<PushedImage> {
  const binary = await caddyBinary();
  const dir = await mkdtemp(join(tmpdir(), 'test-caddy-'));
  try {
    const rootfs = join(dir, 'rootfs');
    for (const file of [binary, ...(await sharedLibraries(binary))]) {
      const target = join(rootfs, file);
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file, target); // follows symlinks
    }
    await writeFile(join(dir, 'Caddyfile'), caddyfile(proxyOptions, siteDirectives));
    await writeFile(
      join(dir, 'Dockerfile'),
      [
        'FROM scratch',
        'COPY rootfs/ /',
        'COPY Caddyfile /etc/caddy/Caddyfile',
        // Caddy keeps certificates/locks under XDG_DATA_HOME and autosaves under
        // XDG_CONFIG_HOME: give it writable directories (WORKDIR creates them).
        'ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data HOME=/data',
        'WORKDIR /config',
        'WORKDIR /data',
        `EXPOSE ${CADDY_PORT}`,
        `ENTRYPOINT ["${binary}", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]`,
        '',
      ].join('\n'),
    );
    return await buildAndPushDir(registry, repoName, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface CaddyService {
  name: string;
  /** The host port Caddy is published on (host mode, every interface). */
  port: number;
  /** `http://127.0.0.1:<port>/` */
  url: string;
}

export interface CaddyServiceOptions {
  name: string;
  image: string;
  network: string;
  registry: TestRegistry;
  /** `host:port` Caddy proxies to: the `www` service's name and port. */
  upstream: string;
}

/**
 * One Caddy task published in host mode on a free port. The port is found by
 * binding and releasing it, so another process may take it first: then the
 * task cannot start ("port already in use") and we retry on a new port.
 */
export async function createCaddyService(opts: CaddyServiceOptions): Promise<CaddyService> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    await dockerCli(
      [
        'service', 'create', '--detach', '--quiet',
        '--name', opts.name,
        '--with-registry-auth',
        '--network', opts.network,
        '--publish', `mode=host,target=${CADDY_PORT},published=${port},protocol=tcp`,
        '--env', `UPSTREAM=${opts.upstream}`,
        '--stop-grace-period', '2s',
        '--label', LABEL_FILTER,
        '--container-label', LABEL_FILTER,
        opts.image,
      ],
      { registry: opts.registry },
    );
    const url = `http://127.0.0.1:${port}/`;
    try {
      await waitForAnswer(url, 30_000);
      return { name: opts.name, port, url };
    } catch (err) {
      lastError = err;
      const ps = await dockerCli(['service', 'ps', '--no-trunc', opts.name]).catch((e: Error) => e.message);
      lastError = new Error(`caddy service ${opts.name} on port ${port}: ${(err as Error).message}\n${ps}`, { cause: err });
      await removeTestResources([opts.name]).catch(() => undefined);
    }
  }
  throw lastError;
}

/** Until Caddy's task runs and the port answers 200 (i.e. it reaches `www` too). */
async function waitForAnswer(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.status === 200) return;
      last = `${res.status} ${body.slice(0, 200)}`;
    } catch (err) {
      last = err instanceof Error ? `${err.message}${err.cause ? ` (${String(err.cause)})` : ''}` : String(err);
    }
    await sleep(200);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms; last: ${last}`);
}

/**
 * The last lines Caddy's task wrote (it logs JSON to stderr, which the CLI's
 * `service logs` passes to its own stderr: read through the API instead), for
 * a failure message.
 */
export async function caddyLogs(name: string, tail: number | 'all' = 40): Promise<string> {
  try {
    const raw = (await docker.getService(name).logs({ stdout: true, stderr: true, tail: tail as number, follow: false })) as unknown as Buffer;
    return demux(raw);
  } catch (err) {
    return `(no logs for ${name}: ${err instanceof Error ? err.message : String(err)})`;
  }
}

/** Docker's multiplexed log stream: frames of [stream, 0, 0, 0, size (u32 BE)] + payload. */
function demux(buf: Buffer): string {
  let out = '';
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    out += buf.subarray(i + 8, i + 8 + size).toString('utf8');
    i += 8 + size;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Load: a bounded loop of GETs through the proxy.

export interface LoadFailure {
  /** ms since the load started */
  at: number;
  status?: number;
  error?: string;
  body?: string;
}

export interface VersionSeen {
  count: number;
  firstMs: number;
  lastMs: number;
}

export interface LoadResult {
  total: number;
  failed: number;
  /** The first failures, for the report (all are counted in `failed`). */
  failures: LoadFailure[];
  /** body -> how many 200 answers carried it, first and last seen (ms since the start) */
  versions: Map<string, VersionSeen>;
  /** epoch ms of the start, to line the `at`/`firstMs`/`lastMs` offsets up with other clocks */
  startedAt: number;
  durationMs: number;
  /** slowest successful request, ms (a retried request shows up here) */
  maxLatencyMs: number;
  /** why the loop ended: `stopped`, `time limit` or `count limit` */
  ended: string;
}

export interface Load {
  /**
   * Resolves once the latest `streak` answers in a row were all `body`, with
   * the epoch ms at which that was seen.
   */
  waitForStreak(body: string, streak: number, timeoutMs: number): Promise<number>;
  /** Ends the loop (after in-flight requests) and returns the tally. */
  stop(): Promise<LoadResult>;
  snapshot(): { total: number; failed: number };
}

export interface LoadOptions {
  url: string;
  concurrency: number;
  /** hard bounds: the loop ends by itself at whichever comes first */
  maxRequests: number;
  maxDurationMs: number;
  /** per request */
  timeoutMs?: number;
  /** pause between a worker's requests, so the engine under test is not starved */
  pauseMs?: number;
}

const MAX_RECORDED_FAILURES = 20;

/**
 * Starts `concurrency` workers, each looping GET `url` one request at a time.
 * Only loopback URLs are accepted: this must never hammer another machine.
 */
export function startLoad(opts: LoadOptions): Load {
  const target = new URL(opts.url);
  if (target.hostname !== '127.0.0.1' && target.hostname !== 'localhost' && target.hostname !== '[::1]') {
    throw new Error(`startLoad only targets loopback, not ${target.hostname}`);
  }
  const timeoutMs = opts.timeoutMs ?? 5000;
  const pauseMs = opts.pauseMs ?? 0;
  const started = Date.now();
  const versions = new Map<string, VersionSeen>();
  const failures: LoadFailure[] = [];
  let total = 0;
  let failed = 0;
  let maxLatencyMs = 0;
  let lastBody: string | undefined;
  let streak = 0;
  let ended = '';
  let issued = 0;

  const record = (f: LoadFailure): void => {
    failed++;
    lastBody = undefined;
    streak = 0;
    if (failures.length < MAX_RECORDED_FAILURES) failures.push(f);
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (ended) return;
      if (issued >= opts.maxRequests) {
        ended ||= 'count limit';
        return;
      }
      if (Date.now() - started >= opts.maxDurationMs) {
        ended ||= 'time limit';
        return;
      }
      issued++;
      const t0 = Date.now();
      try {
        const res = await fetch(target, { signal: AbortSignal.timeout(timeoutMs) });
        const body = await res.text();
        total++;
        if (res.status !== 200) {
          record({ at: t0 - started, status: res.status, body: body.slice(0, 200) });
        } else {
          maxLatencyMs = Math.max(maxLatencyMs, Date.now() - t0);
          const at = Date.now() - started;
          const seen = versions.get(body);
          if (seen) {
            seen.count++;
            seen.lastMs = at;
          } else {
            versions.set(body, { count: 1, firstMs: at, lastMs: at });
          }
          streak = body === lastBody ? streak + 1 : 1;
          lastBody = body;
        }
      } catch (err) {
        total++;
        const e = err as Error & { cause?: unknown };
        record({ at: t0 - started, error: `${e.name}: ${e.message}${e.cause ? ` (${String(e.cause)})` : ''}` });
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  };
  const workers = Promise.all(Array.from({ length: opts.concurrency }, () => worker()));

  return {
    async waitForStreak(body, want, waitMs) {
      const deadline = Date.now() + waitMs;
      while (!(lastBody === body && streak >= want)) {
        if (ended) throw new Error(`load ended (${ended}) before ${want} answers in a row were ${JSON.stringify(body)}`);
        if (Date.now() >= deadline) {
          throw new Error(
            `the proxy did not answer ${JSON.stringify(body)} ${want} times in a row within ${waitMs} ms; last ${JSON.stringify(lastBody)} x${streak}`,
          );
        }
        await sleep(20);
      }
      return Date.now();
    },
    async stop() {
      ended ||= 'stopped';
      await workers;
      return { total, failed, failures, versions, startedAt: started, durationMs: Date.now() - started, maxLatencyMs, ended };
    },
    snapshot: () => ({ total, failed }),
  };
}
