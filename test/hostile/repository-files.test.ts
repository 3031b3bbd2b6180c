// Issue #11 item 4 (the safe-read part), on a real `bin/deployer serve` with real git,
// Docker, registry and Redis: a repository's files are read only as regular files
// inside the build context, and symbolic links never bring host files into a build.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { packContext } from '../../src/docker/context.ts';
import { testConfig, testEnv } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, type DeployerProcess } from '../helpers/process.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { baseEnv, run } from '../support/exec.ts';
import { git, siteFiles, writeFiles, type FileMap } from '../support/site.ts';
import { get, spawnDeployerOnFifo, waitFor } from './helpers.ts';

const REPO = 'acme/hostile-files';
const BRANCHES = ['fd', 'zero', 'leak', 'linked', 'corrupt'] as const;

describe('repository files that point elsewhere (a real `bin/deployer serve`)', () => {
  let world: World;
  let config: Config;
  let daemon: (DeployerProcess & { cleanup(): Promise<void> }) | undefined;
  let url: string;
  let hostDir: string;
  /** Content of host files a build must never see. */
  const token = `host-secret-${randomBytes(12).toString('hex')}`;
  const dirToken = `host-dir-secret-${randomBytes(12).toString('hex')}`;

  /** Commits `files` plus symbolic links on `branch` (from main) and pushes it. */
  const commitOn = async (branch: string, files: FileMap, links: Record<string, string>): Promise<string> => {
    const dir = world.repo.workDir;
    await git(['checkout', '--quiet', '-B', branch, 'main'], dir);
    await writeFiles(dir, files);
    for (const [path, target] of Object.entries(links)) await symlink(target, join(dir, path));
    await git(['add', '--all'], dir);
    await git(['commit', '--quiet', '--no-verify', '-m', `${branch}: ${Object.keys(links).join(', ')}`], dir);
    await git(['push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${branch}`], dir);
    const sha = (await git(['rev-parse', 'HEAD'], dir)).trim();
    await git(['checkout', '--quiet', 'main'], dir);
    return sha;
  };
  const push = async (branch: string, sha: string): Promise<string> => {
    const res = await deliver(url, pushPayload(REPO, branch, sha));
    expect(res.status).toBe(202);
    return res.body.runs[0] as string;
  };
  const finished = (runId: string, timeoutMs: number) =>
    waitFor(`run ${runId} to end`, async () => {
      const r = await (await get(`${url}/api/runs/${runId}`)).json();
      return ['succeeded', 'failed', 'cancelled', 'superseded'].includes(r.status) ? r : undefined;
    }, timeoutMs, 200);

  beforeAll(async () => {
    world = await createWorld({ name: 'hf' });
    hostDir = await mkdtemp(join(tmpdir(), 'hostile-host-'));
    await writeFile(join(hostDir, 'secret.txt'), `${token}\n`);
    await mkdir(join(hostDir, 'dir'));
    await writeFile(join(hostDir, 'dir', 'inside.txt'), `${dirToken}\n`);
    await world.repo.commit(siteFiles('base\n'), 'base');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      concurrency: 4,
      registry: world.registryConfig,
      pipelines: BRANCHES.map((b) => ({ name: b, repo: REPO, url: world.repo.url, branch: b, image: `${world.image}-${b}`, services: [] })),
    });
    // Its stdout a FIFO, as in a container: what /proc/self/fd/1 then opens is readable, and never ends.
    daemon = await spawnDeployerOnFifo(['serve', '--config', config.file], testEnv(world.registry.password), 'listening');
  });

  afterAll(async () => {
    await daemon?.cleanup();
    if (config) await disposeQueues(config);
    await world?.dispose();
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  it('.dockerignore -> /proc/self/fd/1 or /dev/zero: the build fails at once with a clear error; the daemon stays responsive', async () => {
    const fdSha = await commitOn('fd', {}, { '.dockerignore': '/proc/self/fd/1' });
    const zeroSha = await commitOn('zero', {}, { '.dockerignore': '/dev/zero' });
    const runs = [await push('fd', fdSha), await push('zero', zeroSha)];
    // /healthz keeps answering while they run.
    let done = false;
    const health: number[] = [];
    const probe = (async () => {
      while (!done) {
        health.push((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) })).status);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      for (const id of runs) {
        const r = await finished(id, 90_000);
        expect(r.status, JSON.stringify(r.stages)).toBe('failed');
        expect(r.error).toMatch(/^build: \.dockerignore is a symbolic link to "\/(proc\/self\/fd\/1|dev\/zero)", outside the build context/);
        const build = r.stages.find((s: { name: string }) => s.name === 'build');
        expect(Date.parse(build.finishedAt) - Date.parse(build.startedAt)).toBeLessThan(30_000);
        const log = await (await get(`${url}/api/runs/${id}/log`)).text();
        expect(log).toMatch(/\.dockerignore is a symbolic link/);
      }
    } finally {
      done = true;
      await probe;
    }
    expect(health.length).toBeGreaterThan(0);
    expect(health.every((s) => s === 200)).toBe(true);
  });

  it('a .dockerignore linked to a regular file inside the context is honoured', async () => {
    const sha = await commitOn(
      'linked',
      {
        'rules/ignore': 'secret-in-repo.txt\n',
        'secret-in-repo.txt': 'must stay out\n',
        Dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","--install","-s","/bin"]', 'COPY . /ctx', 'RUN ["/bin/sh","-c","test ! -e /ctx/secret-in-repo.txt && test -e /ctx/www/index.html"]', ''].join('\n'),
      },
      { '.dockerignore': 'rules/ignore' },
    );
    const r = await finished(await push('linked', sha), 120_000);
    expect(r.status, r.error).toBe('succeeded');
  });

  it('symbolic links in the build context go into the tar as links: no host file reaches the image', async () => {
    const sha = await commitOn(
      'leak',
      { Dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","--install","-s","/bin"]', 'COPY . /ctx', ''].join('\n') },
      { 'leak.txt': join(hostDir, 'secret.txt'), hostdir: join(hostDir, 'dir'), relative: '../../../../../../../../..' + join(hostDir, 'secret.txt') },
    );
    const r = await finished(await push('leak', sha), 120_000);
    expect(r.status, r.error).toBe('succeeded');
    // Every byte of the image: the links are there, as links; the host files' contents are not.
    const image = await run('docker', ['image', 'save', `${world.image}-leak:latest`], { env: baseEnv() });
    expect(image).toContain('leak.txt');
    expect(image).not.toContain(token);
    expect(image).not.toContain(dirToken);
  });

  it('packContext: a file listed under a directory that is a symbolic link is refused, never read through the link', async () => {
    const ctx = await mkdtemp(join(tmpdir(), 'hostile-ctx-'));
    try {
      await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
      // Git never checks out a file beneath a symbolic link; a list that says so anyway
      // (a malformed tree, a bug) must not make the tar follow the link.
      await symlink(hostDir, join(ctx, 'via'));
      const packed = packContext(ctx, ['Dockerfile', 'via', 'via/secret.txt'], 'Dockerfile');
      const got = await packed.then(async ({ stream }) => tarContents(stream), (err: Error) => err);
      if (got instanceof Error) {
        expect(got.message).toMatch(/via\/secret\.txt.*symbolic link/);
      } else {
        expect(got.join('\n')).not.toContain(token);
        throw new Error(`packContext accepted a file beneath a symbolic link: ${got.length} entries`);
      }
    } finally {
      await rm(ctx, { recursive: true, force: true });
    }
  });

  it('a branch whose head holds a malformed tree: the fetch refuses it (fsck), nothing is built, the mirror stays clean', async () => {
    // Made with plain git in the remote: a tree listing the same name twice (`git fsck`:
    // duplicateEntries, an error), in a commit on top of main.
    const bare = world.repo.bareDir;
    const blob = (await git(['hash-object', '-w', '--stdin'], bare)).trim();
    const entry = Buffer.concat([Buffer.from('100644 a\0'), Buffer.from(blob, 'hex')]);
    const tmp = await mkdtemp(join(tmpdir(), 'hostile-tree-'));
    try {
      await writeFile(join(tmp, 'tree'), Buffer.concat([entry, entry]));
      const tree = (await git(['hash-object', '-t', 'tree', '-w', '--literally', join(tmp, 'tree')], bare)).trim();
      const commit = (await git(['commit-tree', tree, '-p', 'main', '-m', 'malformed tree'], bare)).trim();
      await git(['update-ref', 'refs/heads/corrupt', commit], bare);
      const r = await finished(await push('corrupt', commit), 90_000);
      expect(r.status).toBe('failed');
      expect(r.error).toMatch(new RegExp(`^fetch: git: refused a malformed object from .* \\(fsck\\): error: object ${tree}: duplicateEntries`));
      // Refused as a whole, at once: not retried as if the network had failed.
      expect(await (await get(`${url}/api/runs/${r.id}/log`)).text()).not.toMatch(/retry 1\/3/);
      const mirror = join(config.dataDir, 'git', 'mirrors', `${REPO.replace('/', '_')}.git`);
      await expect(git(['cat-file', '-e', tree], mirror)).rejects.toThrow();
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('stops promptly on SIGTERM afterwards', async () => {
    const code = await Promise.race([daemon!.kill('SIGTERM'), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
    expect(code).toBe(0);
  });
});

/** The tar's listing and the contents of its regular files (GNU tar reads it). */
async function tarContents(stream: Readable): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'hostile-tar-'));
  try {
    const file = join(dir, 'context.tar');
    await pipeline(stream, createWriteStream(file));
    const listing = await run('tar', ['-tvf', file], { env: baseEnv() });
    const contents = await run('tar', ['-xOf', file], { env: baseEnv() });
    return [listing, contents];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
