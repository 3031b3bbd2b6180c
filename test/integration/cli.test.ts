import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../../bin/deployer');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DOCKER_HOST = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';

const hex = (n: number) => randomBytes(n).toString('hex');
// Every secret the configs below contain, by every route: env var, file, inline, URL.
const SECRETS = {
  webhook: `whs-${hex(8)}`,
  admin: `adm-${hex(10)}`,
  token: `ght-${hex(8)}`,
  registryPassword: `rpw-${hex(8)}`,
  filePassword: `fpw-${hex(8)}`,
  urlPassword: `url-${hex(8)}`,
  inlineToken: `inl-${hex(8)}`,
  shortAdmin: `sa-${hex(3)}`,
};
const ENV = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  LANG: 'C.UTF-8',
  WHS: SECRETS.webhook,
  ADM: SECRETS.admin,
  GHT: SECRETS.token,
  RPW: SECRETS.registryPassword,
};

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/deployer to completion. */
function deployer(args: string[], timeoutMs = 30_000): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(BIN, args, { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`deployer ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

function expectNoSecrets(...texts: string[]): void {
  for (const text of texts) for (const [name, value] of Object.entries(SECRETS)) expect(text, `secret "${name}" leaked`).not.toContain(value);
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

describe('bin/deployer as a real process', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'deployer-cli-'));
    await writeFile(join(dir, 'registry-password'), `${SECRETS.filePassword}\n`);
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('check-config', () => {
    it('prints the pipelines of a valid config and exits 0, without any secret', async () => {
      const file = join(dir, 'valid.yaml');
      await writeFile(
        file,
        `listen: 127.0.0.1:18090
dataDir: ./state
redisPrefix: cli-valid
github:
  webhookSecret: \${WHS}
  token: \${GHT}
auth:
  adminToken: \${ADM}
registries:
  - host: 127.0.0.1:5000
    username: ci
    password: \${RPW}
  - host: registry.example.org
    username: robot
    passwordFile: registry-password
pipelines:
  - name: www
    repo: acme/site
    url: https://deploy:${SECRETS.urlPassword}@git.example.org/acme/site.git
    build: { context: site, dockerfile: Dockerfile.prod, args: { VERSION: "1" }, target: prod }
    image: 127.0.0.1:5000/acme/site
    tag: live
    services: [infra_www, infra_www2]
    deploy: { order: stop-first, monitor: 2s, timeout: 90s, failureAction: pause }
  - name: docs
    repo: acme/docs
    image: registry.example.org/acme/docs
    services: []
`,
      );
      const r = await deployer(['check-config', '--config', file]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.split('\n');
      // After the description and where runs are reported: one line per target service (this config's Docker socket does not exist).
      expect(lines.slice(9, 14)).toEqual([
        'reporting:',
        '  www reports to https://api.github.com: deployments, checks in environment "production" with a token (commit statuses instead of check runs)',
        '  docs reports to https://api.github.com: deployments, checks in environment "production" with a token (commit statuses instead of check runs)',
        'notify: nobody',
        'metrics: GET /metrics with the admin token',
      ]);
      expect(lines.slice(14, -1)).toEqual([
        // No engine at that socket here (note); on a machine with one, the service is missing (warning).
        expect.stringMatching(/^(note: www: could not inspect infra_www on unix:\/\/\/var\/run\/docker.sock .*rollout settings not checked|warning: www: service infra_www does not exist)/),
        expect.stringMatching(/^(note|warning): www: .*infra_www2 /),
      ]);
      expect([...lines.slice(0, 9), '']).toEqual([
        `config ${file} is valid`,
        `listen 127.0.0.1:18090, data ${join(dir, 'state')}, redis prefix cli-valid`,
        '2 pipeline(s):',
        '  www: acme/site@main (https://git.example.org/acme/site.git)',
        '    build site/Dockerfile.prod target prod -> 127.0.0.1:5000/acme/site:live and :<commit>',
        '    deploy to infra_www, infra_www2: stop-first, on failure pause, monitor 2.0s, timeout 1m30s',
        '  docs: acme/docs@main (https://github.com/acme/docs.git)',
        '    build ./Dockerfile -> registry.example.org/acme/docs:latest and :<commit>',
        '    deploy to (no services): start-first, on failure rollback, monitor 5.0s, timeout 5m00s',
        '',
      ]);
      expectNoSecrets(r.stdout, r.stderr);
    });

    it('exits 1 and lists every error with its key path on stderr, without any secret', async () => {
      const file = join(dir, 'invalid.yaml');
      await writeFile(
        file,
        `listen: 127.0.0.1:18090
colour: blue
github:
  webhookSecret: \${NOPE_NOT_SET_${hex(3)}}
  token: ${SECRETS.inlineToken}
auth:
  adminToken: ${SECRETS.shortAdmin}
registries:
  - host: 127.0.0.1:5000
    username: ci
    password: \${RPW}
pipelines:
  - name: www
    repo: acme/site
    image: 127.0.0.1:5000/acme/site
    services: [infra_www]
    colour: red
  - name: www
    repo: acme/other
    image: 127.0.0.1:5000/acme/site:latest
    services: [infra_www2]
  - name: upper
    repo: acme/upper
    image: 127.0.0.1:5000/Acme/Site
    services: []
`,
      );
      const r = await deployer(['check-config', '--config', file]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      const [head, ...issues] = r.stderr.trimEnd().split('\n');
      const unset = /environment variable (NOPE_NOT_SET_[0-9a-f]+) is not set/.exec(r.stderr)?.[1];
      expect([...issues].sort()).toEqual(
        [
          '  colour: unknown key',
          '  pipelines[0].colour: unknown key',
          `  github.webhookSecret: environment variable ${unset} is not set`,
          '  auth.adminToken: must be at least 16 characters',
          '  pipelines[1].name: duplicate pipeline name "www"',
          '  pipelines[1].image: "127.0.0.1:5000/acme/site:latest" must not contain a tag (set "tag" instead)',
          '  pipelines[2].image: "127.0.0.1:5000/Acme/Site" must be a repository name like "registry.example.org/team/site" (lowercase letters, digits, separators . _ -)',
        ].sort(),
      );
      expect(head).toBe(`${file}: ${issues.length} error(s)`);
      expectNoSecrets(r.stdout, r.stderr);
    });

    it('exits 1 for a file that cannot be read', async () => {
      const file = join(dir, 'missing.yaml');
      const r = await deployer(['check-config', '--config', file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`${file}: 1 error(s)\n  (file): cannot read: ENOENT\n`);
    });
  });

  describe('usage errors exit 2 with the usage on stderr', () => {
    const USAGE = /^usage: deployer <command> \[options\]$/m;

    it.each([
      ['an unknown command', ['deploy-everything', '--config', 'x.yaml'], 'deployer: unknown command "deploy-everything"'],
      ['a missing --config', ['check-config'], 'deployer check-config: --config FILE is required'],
      ['a missing --config for serve', ['serve'], 'deployer serve: --config FILE is required'],
      ['an unknown option', ['serve', '--config', 'x.yaml', '--verbose'], "deployer: Unknown option '--verbose'"],
      ['no command at all', [], 'usage: deployer'],
    ])('%s', async (_what, args, message) => {
      const r = await deployer(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.startsWith(message)).toBe(true);
      expect(r.stderr).toMatch(USAGE);
    });

    it('--help prints the usage on stdout and exits 0', async () => {
      const r = await deployer(['--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(USAGE);
      expect(r.stderr).toBe('');
    });
  });

  describe('long-running commands', () => {
    const prefixes: string[] = [];

    afterAll(async () => {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      try {
        for (const prefix of prefixes) {
          const keys = await redis.keys(`${prefix}:*`);
          if (keys.length > 0) await redis.del(...keys);
        }
      } finally {
        redis.disconnect();
      }
    });

    async function writeServeConfig(port: number): Promise<string> {
      const prefix = `cli-test-${hex(6)}`;
      prefixes.push(prefix);
      const file = join(dir, `serve-${prefix}.yaml`);
      await writeFile(
        file,
        `listen: 127.0.0.1:${port}
dataDir: ./data-${prefix}
redis: ${REDIS_URL}
redisPrefix: ${prefix}
logLevel: info
github:
  webhookSecret: \${WHS}
  token: \${GHT}
auth:
  adminToken: \${ADM}
docker:
  host: ${DOCKER_HOST}
registries:
  - host: 127.0.0.1:5000
    username: ci
    password: \${RPW}
pipelines:
  - name: www
    repo: acme/site
    url: file://${dir}/no-such-repo.git
    image: 127.0.0.1:5000/acme/site
    services: []
    poll: false
`,
      );
      return file;
    }

    /** Starts a command, waits for a log line with `msg`, returns the process and its output so far. */
    async function start(args: string[], msg: string): Promise<{ child: ChildProcess; out: { stdout: string; stderr: string }; exited: Promise<Result> }> {
      const child = spawn(BIN, args, { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
      const out = { stdout: '', stderr: '' };
      child.stdout!.on('data', (c: Buffer) => (out.stdout += c.toString('utf8')));
      child.stderr!.on('data', (c: Buffer) => (out.stderr += c.toString('utf8')));
      const exited = new Promise<Result>((res) => child.on('close', (code, signal) => res({ code, signal, ...out })));
      const deadline = Date.now() + 20_000;
      while (!out.stdout.split('\n').some((l) => l.includes(`"msg":"${msg}"`))) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`deployer ${args.join(' ')} exited early: ${out.stderr}${out.stdout}`);
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new Error(`no "${msg}" log line within 20 s: ${out.stderr}${out.stdout}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return { child, out, exited };
    }

    async function stop(child: ChildProcess, exited: Promise<Result>): Promise<{ result: Result; tookMs: number }> {
      const t0 = Date.now();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const result = await exited;
      clearTimeout(timer);
      return { result, tookMs: Date.now() - t0 };
    }

    it('serve answers /healthz and exits 0 on SIGTERM', async () => {
      const port = await freePort();
      const file = await writeServeConfig(port);
      const { child, exited } = await start(['serve', '--config', file], 'listening');
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ status: 'ok', failing: [] });
      } finally {
        const { result, tookMs } = await stop(child, exited);
        expect(result.signal).toBeNull();
        expect(result.code).toBe(0);
        expect(tookMs).toBeLessThan(10_000);
        expect(result.stdout).toContain('"msg":"shutting down"');
        expect(result.stderr).toBe('');
        expectNoSecrets(result.stdout, result.stderr);
      }
      // The port is released: nothing answers any more.
      await expect(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    });

    it('worker starts without HTTP and exits 0 on SIGTERM', async () => {
      const port = await freePort();
      const file = await writeServeConfig(port);
      const { child, exited } = await start(['worker', '--config', file], 'worker started');
      try {
        // A worker never listens, whatever the config says.
        await expect(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
      } finally {
        const { result, tookMs } = await stop(child, exited);
        expect(result.signal).toBeNull();
        expect(result.code).toBe(0);
        expect(tookMs).toBeLessThan(10_000);
        expect(result.stderr).toBe('');
        expectNoSecrets(result.stdout, result.stderr);
      }
    });
  });
});
