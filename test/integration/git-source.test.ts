import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config, PipelineConfig } from '../../src/config/types.ts';
import { createGit } from '../../src/git/factory.ts';
import { GitSource } from '../../src/git/source.ts';
import { DeployerError } from '../../src/lib/errors.ts';
import { Secret } from '../../src/lib/secret.ts';
import type { Checkout } from '../../src/pipeline/ports.ts';
import { testConfig } from '../helpers/config.ts';
import { baseEnv, run } from '../support/exec.ts';
import { createSiteRepo, git, siteFiles, type SiteRepo } from '../support/site.ts';

const REPO = 'acme/site';
const IMAGE = '127.0.0.1:5999/acme/site';
const TOKEN = `ghs_${Math.random().toString(36).slice(2)}TestToken`;
const TOKEN_HEADER = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
const URL_PASSWORD = 'hunter2-url-password';

/**
 * GitSource and the git factory against real repositories: a bare repo over file://,
 * and the same repo served over real smart HTTP(S) by `git http-backend`, so the
 * requests git makes (headers, protocol v2 commands) can be observed.
 */
describe('GitSource and createGit (real git)', () => {
  let repo: SiteRepo;
  let shaA: string;
  let shaB: string;
  const configs: Config[] = [];

  const A_FILES = ['Dockerfile', 'busybox', 'docs/ünï code.txt', 'old.txt', 'www/index.html'];
  const B_FILES = ['Dockerfile', 'busybox', 'docs/ünï code.txt', 'new dir/new.txt', 'www/index.html'];

  function makeConfig(url: string, token?: string): Config {
    const c = testConfig({ pipelines: [{ name: 'site', repo: REPO, url, branch: 'main', image: IMAGE }] });
    configs.push(c);
    return token ? { ...c, github: { ...c.github, token: new Secret(token) } } : c;
  }
  const pipelineOf = (c: Config, url?: string): PipelineConfig => ({ ...c.pipelines[0]!, ...(url ? { url } : {}) });
  const mirrorOf = (c: Config) => join(c.dataDir, 'git', 'mirrors', 'acme_site.git');

  async function checkout(source: GitSource, pipeline: PipelineConfig, commit: string | null, lines: string[] = [], signal = new AbortController().signal): Promise<Checkout> {
    return source.checkout({ pipeline, commit, signal, log: (l) => lines.push(l) });
  }

  beforeAll(async () => {
    repo = await createSiteRepo();
    shaA = await repo.commit({ ...siteFiles('version A\n'), 'old.txt': 'only in A\n', 'docs/ünï code.txt': 'unicode name\n' }, 'version A');
    shaB = await repo.commit(
      { ...siteFiles('version B\n'), 'old.txt': null, 'new dir/new.txt': 'only in B\n' },
      'version B: the subject\n\nand a body that is not the subject',
    );
  });

  afterAll(async () => {
    for (const c of configs) await rm(dirname(c.file), { recursive: true, force: true });
    await repo?.cleanup();
  });

  describe('over file://', () => {
    let config: Config;
    let source: GitSource;
    let pipeline: PipelineConfig;

    beforeAll(() => {
      config = makeConfig(repo.url);
      source = new GitSource(config);
      pipeline = pipelineOf(config);
    });

    it('checks out exactly the requested commit into a fresh work tree; cleanup() removes it', async () => {
      const lines: string[] = [];
      const co = await checkout(source, pipeline, shaB, lines);
      expect(co.commit).toBe(shaB);
      expect(co.subject).toBe('version B: the subject');
      expect(co.author).toBe('Deployer Test');
      expect(co.dir.startsWith(join(config.dataDir, 'work', 'site-'))).toBe(true);
      expect([...co.files].sort()).toEqual(B_FILES);
      // The directory holds these files and nothing else (".git" is the worktree's pointer file).
      expect(listFiles(co.dir)).toEqual(B_FILES);
      expect(await readFile(join(co.dir, 'www/index.html'), 'utf8')).toBe('version B\n');
      expect(await readFile(join(co.dir, 'new dir/new.txt'), 'utf8')).toBe('only in B\n');
      expect((await stat(join(co.dir, 'busybox'))).mode & 0o111).toBe(0o111);
      expect((await git(['rev-parse', 'HEAD'], co.dir)).trim()).toBe(shaB);
      expect(await git(['status', '--porcelain'], co.dir)).toBe('');
      expect(lines).toContain(`checked out ${shaB.slice(0, 12)} "version B: the subject" (5 files)`);

      await co.cleanup();
      expect(existsSync(co.dir)).toBe(false);
      expect(await git(['worktree', 'list', '--porcelain'], mirrorOf(config))).not.toContain(co.dir);
    });

    it('recovers a mirror left without origin by a fetch stopped right after `git init`', async () => {
      const c = makeConfig(repo.url);
      const mirror = mirrorOf(c);
      await run('git', ['init', '--quiet', '--bare', mirror], { env: baseEnv() });
      const co = await checkout(new GitSource(c), pipelineOf(c), shaA);
      expect(co.commit).toBe(shaA);
      await co.cleanup();
      expect((await run('git', ['--git-dir', mirror, 'remote', 'get-url', 'origin'], { env: baseEnv() })).trim()).toBe(repo.url);
    });

    it('checks out an older commit from the cached mirror without cloning or fetching objects again', async () => {
      const mirror = mirrorOf(config);
      const before = await snapshot(mirror);
      const marker = join(mirror, 'test-marker');
      await writeFile(marker, 'a re-clone would remove this\n');

      const co = await checkout(source, pipeline, shaA);
      try {
        expect(co.commit).toBe(shaA);
        expect(co.subject).toBe('version A');
        expect(listFiles(co.dir)).toEqual(A_FILES);
        expect(await readFile(join(co.dir, 'old.txt'), 'utf8')).toBe('only in A\n');
        const after = await snapshot(mirror);
        expect(after.dirIno).toBe(before.dirIno);
        // Same object files (same inodes): nothing was transferred or repacked.
        expect(after.objects).toEqual(before.objects);
        expect(existsSync(marker)).toBe(true);
      } finally {
        await co.cleanup();
        await rm(marker, { force: true });
      }
    });

    it('serialises concurrent checkouts of one repository: both succeed in separate trees', async () => {
      const [a, b] = await Promise.all([checkout(source, pipeline, shaA), checkout(source, pipeline, shaB)]);
      try {
        expect(a.dir).not.toBe(b.dir);
        expect(listFiles(a.dir)).toEqual(A_FILES);
        expect(listFiles(b.dir)).toEqual(B_FILES);
      } finally {
        await a.cleanup();
        await b.cleanup();
      }
    });

    it('checks out the branch head as it is now when commit is null', async () => {
      const lines: string[] = [];
      const co1 = await checkout(source, pipeline, null, lines);
      expect(co1.commit).toBe(shaB);
      expect(lines).toContain(`branch main is at ${shaB}`);
      await co1.cleanup();

      const shaC = await repo.commit({ 'www/index.html': 'version C\n' }, 'version C');
      const co2 = await checkout(source, pipeline, null);
      expect(co2.commit).toBe(shaC);
      expect(co2.subject).toBe('version C');
      expect(await readFile(join(co2.dir, 'www/index.html'), 'utf8')).toBe('version C\n');
      await co2.cleanup();
    });

    it('fetches a commit that a force-push removed from the branch, directly by sha', async () => {
      const head = (await git(['rev-parse', 'HEAD'], repo.workDir)).trim();
      const shaD = await repo.commit({ 'www/index.html': 'version D\n' }, 'version D (force-pushed away)');
      await git(['push', '--quiet', '--force', 'origin', `${head}:refs/heads/main`], repo.workDir);
      await git(['reset', '--quiet', '--hard', head], repo.workDir);
      // Upstream still has D, but no ref reaches it (a bare repo keeps no reflog).
      await git(['cat-file', '-e', `${shaD}^{commit}`], repo.bareDir);
      expect((await git(['for-each-ref', '--contains', shaD], repo.bareDir)).trim()).toBe('');

      const lines: string[] = [];
      const co = await checkout(source, pipeline, shaD, lines);
      try {
        expect(lines).toContain(`commit ${shaD} is no longer on main; fetching it directly`);
        expect(co.commit).toBe(shaD);
        expect(await readFile(join(co.dir, 'www/index.html'), 'utf8')).toBe('version D\n');
      } finally {
        await co.cleanup();
      }
    });

    it('quirk: fetching an unadvertised commit needs protocol v2 (v0/v1 clients refuse it)', async () => {
      // What the previous test relies on. Git >= 2.26 speaks v2 by default, and v2's
      // upload-pack serves any object it has; with v0 the client itself refuses to ask.
      const head = (await git(['rev-parse', 'HEAD'], repo.workDir)).trim();
      const shaE = await repo.commit({ 'www/index.html': 'version E\n' }, 'version E');
      await git(['push', '--quiet', '--force', 'origin', `${head}:refs/heads/main`], repo.workDir);
      await git(['reset', '--quiet', '--hard', head], repo.workDir);
      const scratch = await mkdtemp(join(tmpdir(), 'git-v0-'));
      try {
        await git(['init', '--quiet', '--bare'], scratch);
        await expect(git(['-c', 'protocol.version=0', 'fetch', '--quiet', repo.url, shaE], scratch)).rejects.toThrow(
          /Server does not allow request for unadvertised object/,
        );
        await git(['-c', 'protocol.version=2', 'fetch', '--quiet', repo.url, shaE], scratch);
        await git(['cat-file', '-e', `${shaE}^{commit}`], scratch);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });

    it('fails a commit that does not exist upstream with git_failed and one line', async () => {
      const missing = 'f00d'.repeat(10);
      const err = await checkout(source, pipeline, missing).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DeployerError);
      expect((err as DeployerError).code).toBe('git_failed');
      // git's own words (their prefix depends on git's verbosity), on one line.
      expect((err as DeployerError).message).toMatch(new RegExp(`^commit ${missing} cannot be fetched from ${repo.url}: fatal: .*upload-pack: not our ref ${missing}$`));
      expect(readdirSync(join(config.dataDir, 'work'))).toEqual([]);
    });
  });

  describe('over smart HTTP(S) (git http-backend)', () => {
    let certDir: string;
    let savedHome: string | undefined;
    let https: GitHttpServer;
    let http: GitHttpServer;

    beforeAll(async () => {
      // A self-signed certificate that git trusts through http.sslCAInfo in $HOME/.gitconfig:
      // createGit passes HOME through, and nothing else can reach git's environment.
      certDir = await mkdtemp(join(tmpdir(), 'git-tls-'));
      await run(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
          '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')],
        { env: baseEnv() },
      );
      await writeFile(join(certDir, '.gitconfig'), `[http]\n\tsslCAInfo = ${join(certDir, 'cert.pem')}\n`);
      savedHome = process.env.HOME;
      process.env.HOME = certDir;
      const tls = { key: await readFile(join(certDir, 'key.pem'), 'utf8'), cert: await readFile(join(certDir, 'cert.pem'), 'utf8') };
      https = await startGitHttp(dirname(repo.bareDir), { tls });
      http = await startGitHttp(dirname(repo.bareDir));
    });

    afterAll(async () => {
      if (savedHome === undefined) delete process.env.HOME;
      else process.env.HOME = savedHome;
      await https?.close();
      await http?.close();
      if (certDir) await rm(certDir, { recursive: true, force: true });
    });

    it('sends the token to an https remote as a Basic header, never in argv or any file; fetches incrementally', async () => {
      const url = `${https.base}/site.git`;
      const config = makeConfig(url, TOKEN);
      const source = new GitSource(config);
      https.requests.length = 0;
      const argvSeen: string[] = [];
      https.onRequest = () => argvSeen.push(...commandLines());
      const lines: string[] = [];
      const co = await checkout(source, pipelineOf(config), shaB, lines);
      https.onRequest = undefined;
      try {
        expect(co.commit).toBe(shaB);
        expect(https.requests.length).toBeGreaterThan(0);
        for (const r of https.requests) expect(r.headers.authorization).toBe(TOKEN_HEADER);
        expect(https.requests.filter((r) => r.command === 'fetch')).toHaveLength(1);
        // The scan of every process's argv, taken while git talked to the server, saw git...
        expect(argvSeen.some((cmd) => cmd.includes(`remote-https origin ${url}`))).toBe(true);
        // ...and the token in none of them, raw or encoded.
        expect(argvSeen.filter((cmd) => cmd.includes(TOKEN) || cmd.includes(TOKEN_HEADER))).toEqual([]);
        expect(await filesContaining(config.dataDir, [TOKEN, TOKEN_HEADER.slice('Basic '.length)])).toEqual([]);
        expect(lines.join('\n')).not.toContain(TOKEN);
      } finally {
        await co.cleanup();
      }

      // An older commit is already in the mirror: only ls-refs, no fetch command, no pack.
      https.requests.length = 0;
      const older = await checkout(source, pipelineOf(config), shaA);
      await older.cleanup();
      expect(https.requests.map((r) => r.command)).not.toContain('fetch');
      expect(https.requests.map((r) => r.command)).toContain('ls-refs');
    });

    it('sends no token to a plain http:// remote', async () => {
      const config = makeConfig(`${http.base}/site.git`, TOKEN);
      http.requests.length = 0;
      const co = await checkout(new GitSource(config), pipelineOf(config), shaB);
      await co.cleanup();
      expect(http.requests.length).toBeGreaterThan(0);
      expect(http.requests.map((r) => r.headers.authorization)).toEqual(http.requests.map(() => undefined));
    });

    it('createGit({ token }): the header reaches the server, the token stays out of argv and .git', async () => {
      const baseDir = await mkdtemp(join(tmpdir(), 'git-factory-'));
      try {
        await git(['init', '--quiet'], baseDir);
        const url = `${http.base}/site.git`;
        http.requests.length = 0;
        const argvSeen: string[] = [];
        http.onRequest = () => argvSeen.push(...commandLines());
        const g = createGit({ baseDir, token: new Secret(TOKEN), environment: { path: process.env.PATH!, home: process.env.HOME! } });
        const refs = await g.raw(['ls-remote', url]);
        await g.raw(['remote', 'add', 'origin', url]);
        await g.raw(['fetch', '--quiet', 'origin', 'main']);
        http.onRequest = undefined;

        expect(refs).toContain('\trefs/heads/main');
        expect(http.requests.length).toBeGreaterThanOrEqual(2);
        for (const r of http.requests) expect(r.headers.authorization).toBe(TOKEN_HEADER);
        expect(argvSeen.some((cmd) => cmd.includes(`ls-remote ${url}`) || cmd.includes(`remote-http origin ${url}`))).toBe(true);
        expect(argvSeen.filter((cmd) => cmd.includes(TOKEN) || cmd.includes(TOKEN_HEADER))).toEqual([]);
        expect(await readFile(join(baseDir, '.git', 'config'), 'utf8')).not.toMatch(/extraHeader|Authorization/i);
        expect(await filesContaining(baseDir, [TOKEN, TOKEN_HEADER.slice('Basic '.length)])).toEqual([]);
      } finally {
        http.onRequest = undefined;
        await rm(baseDir, { recursive: true, force: true });
      }
    });

    it('fails a missing commit with git_failed and a one-line message without URL credentials', async () => {
      const url = `${https.base.replace('://', `://deploy:${URL_PASSWORD}@`)}/site.git`;
      const config = makeConfig(url);
      const missing = 'beef'.repeat(10);
      const lines: string[] = [];
      const err = await checkout(new GitSource(config), pipelineOf(config), missing, lines).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DeployerError);
      const e = err as DeployerError;
      expect(e.code).toBe('git_failed');
      expect(e.message).toMatch(new RegExp(`^commit ${missing} cannot be fetched from ${https.base}/site\\.git: .*not our ref ${missing}$`));
      expect(e.message).not.toContain('\n');
      expect(e.message).not.toContain(URL_PASSWORD);
      expect(lines.join('\n')).not.toContain(URL_PASSWORD);
    });

    it('fails an unreachable URL with git_failed (retryable) and a one-line message without URL credentials', async () => {
      const port = await closedPort();
      const url = `https://deploy:${URL_PASSWORD}@127.0.0.1:${port}/site.git`;
      const config = makeConfig(url);
      const lines: string[] = [];
      const err = await checkout(new GitSource(config), pipelineOf(config), shaB, lines).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DeployerError);
      const e = err as DeployerError;
      expect(e.code).toBe('git_failed');
      expect(e.retryable).toBe(true);
      expect(e.message).toMatch(new RegExp(`^git: fatal: unable to access 'https://127\\.0\\.0\\.1:${port}/site\\.git/': Failed to connect to 127\\.0\\.0\\.1 port ${port}\\b`));
      expect(e.message).not.toContain('\n');
      expect(e.message).not.toContain(URL_PASSWORD);
      expect(lines).toEqual([`git fetch https://127.0.0.1:${port}/site.git main`]);
    });

    it('an abort during a stalled fetch stops git and its helpers promptly; the mirror stays usable', async () => {
      const stalled = await startStalledServer();
      try {
        const config = makeConfig(`${stalled.base}/site.git`);
        const source = new GitSource(config);
        const ac = new AbortController();
        let abortedAt = 0;
        // Abort once git's HTTP helper is settled waiting for the answer (an abort at the
        // very instant of the request happens to take the helper down with git).
        stalled.onRequest = () => {
          setTimeout(() => {
            abortedAt = Date.now();
            ac.abort(new Error('cancelled by the test'));
          }, 300);
        };
        const err = await checkout(source, pipelineOf(config), shaB, [], ac.signal).then(() => undefined, (e: unknown) => e);
        const tookMs = Date.now() - abortedAt;
        expect(abortedAt).toBeGreaterThan(0);
        expect(err).toBeInstanceOf(Error);
        expect(tookMs).toBeLessThan(2000);
        // Not a git failure: the run was cancelled.
        expect((err as DeployerError).code).not.toBe('git_failed');
        // No git process (fetch, git remote-http, git-remote-http) is left hanging on the server.
        await waitFor(() => processesWith(`127.0.0.1:${stalled.port}`).length === 0, 2000, () => processesWith(`127.0.0.1:${stalled.port}`).join('; '));
        // Same repository, same mirror: the aborted fetch left no lock behind.
        const co = await checkout(source, pipelineOf(config, repo.url), shaB);
        expect(co.commit).toBe(shaB);
        await co.cleanup();
      } finally {
        await stalled.close();
      }
    });
  });
});

// ---------------------------------------------------------------------------------

/** Regular files and symlinks under `dir`, relative, sorted; the worktree's `.git` file is left out. */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const ent of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (d === dir && ent.name === '.git') continue;
      if (ent.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

async function snapshot(mirror: string): Promise<{ dirIno: number; objects: string[] }> {
  const objects: string[] = [];
  const walk = async (d: string) => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else objects.push(`${relative(mirror, p)}@${(await lstat(p)).ino}`);
    }
  };
  await walk(join(mirror, 'objects'));
  return { dirIno: (await stat(mirror)).ino, objects: objects.sort() };
}

/** Files under `dir` whose bytes contain any of `needles`. */
async function filesContaining(dir: string, needles: string[]): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (d: string) => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) {
        const text = (await readFile(p)).toString('latin1');
        if (needles.some((n) => text.includes(n))) hits.push(p);
      }
    }
  };
  await walk(dir);
  return hits;
}

/** The command line (NULs as spaces) of every process on the machine. */
function commandLines(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const processesWith = (needle: string): string[] => commandLines().filter((cmd) => cmd.includes(needle));

async function waitFor(cond: () => boolean, timeoutMs: number, explain: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`still true after ${timeoutMs} ms: ${explain()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A loopback port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  /** Protocol v2 command of an upload-pack POST ("ls-refs", "fetch"), else undefined. */
  command: string | undefined;
}

interface GitHttpServer {
  base: string;
  port: number;
  requests: SeenRequest[];
  onRequest: (() => void) | undefined;
  close(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

/** Serves every bare repository under `root` over smart HTTP (git http-backend as CGI), recording requests. */
async function startGitHttp(root: string, opts: { tls?: { key: string; cert: string } } = {}): Promise<GitHttpServer> {
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
      const url = new URL(req.url ?? '/', 'http://localhost');
      const command = /^[0-9a-f]{4}command=([a-z-]+)/.exec(body.toString('latin1'))?.[1];
      self.requests.push({ method: req.method ?? '', path: url.pathname + url.search, headers: { ...req.headers }, command });
      self.onRequest?.();
      const child = spawn('git', ['http-backend'], {
        env: baseEnv({
          GIT_CONFIG_GLOBAL: '/dev/null',
          GIT_CONFIG_NOSYSTEM: '1',
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: '1',
          PATH_INFO: url.pathname,
          QUERY_STRING: url.search.slice(1),
          REQUEST_METHOD: req.method ?? 'GET',
          CONTENT_TYPE: req.headers['content-type'] ?? '',
          CONTENT_LENGTH: String(body.length),
          GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
          REMOTE_ADDR: '127.0.0.1',
        }),
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(body);
      const out: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.on('close', () => {
        const all = Buffer.concat(out);
        const split = all.indexOf('\r\n\r\n');
        let status = 200;
        const headers: Record<string, string> = {};
        for (const line of all.subarray(0, Math.max(split, 0)).toString('latin1').split('\r\n')) {
          const i = line.indexOf(':');
          if (i < 0) continue;
          const k = line.slice(0, i).trim().toLowerCase();
          const v = line.slice(i + 1).trim();
          if (k === 'status') status = Number.parseInt(v, 10);
          else headers[k] = v;
        }
        res.writeHead(split < 0 ? 502 : status, headers);
        res.end(split < 0 ? 'bad CGI output' : all.subarray(split + 4));
      });
    });
  };
  const server = opts.tls ? createHttpsServer(opts.tls, handle) : createHttpServer(handle);
  const port = await listen(server);
  const self: GitHttpServer = {
    base: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests: [],
    onRequest: undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return self;
}

/** Accepts requests and never answers them: a remote that stalls mid-fetch. */
async function startStalledServer(): Promise<{ base: string; port: number; onRequest: (() => void) | undefined; close(): Promise<void> }> {
  const server = createHttpServer(() => self.onRequest?.());
  const port = await listen(server);
  const self = {
    base: `http://127.0.0.1:${port}`,
    port,
    onRequest: undefined as (() => void) | undefined,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return self;
}
