import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerBuilder } from '../../src/docker/build.ts';
import { createDocker } from '../../src/docker/client.ts';
import { DockerPusher } from '../../src/docker/push.ts';
import { DeployerError } from '../../src/lib/errors.ts';
import { Secret } from '../../src/lib/secret.ts';
import type { BuildRequest } from '../../src/pipeline/ports.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { copyBusybox, writeFiles, type FileMap } from '../support/site.ts';
import { TEST_LABEL, cleanupLeftovers, dockerCli, uniqueName } from '../support/swarm.ts';

const docker = createDocker(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';

const BUSYBOX_HEAD = ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","--install","-s","/bin"]'];

interface InspectedImage {
  Id: string;
  RepoTags: string[] | null;
  Config: { Labels: Record<string, string> | null };
}

/**
 * DockerBuilder and DockerPusher on the real engine and a real htpasswd registry.
 * Contexts are FROM scratch around static busybox; every image carries the test label
 * and every tag is removed afterwards.
 */
describe('DockerBuilder (classic builder) / packContext / DockerPusher (real engine and registry)', () => {
  const builder = new DockerBuilder(docker);
  const repoName = uniqueName('build-test');
  const dirs: string[] = [];
  const tags = new Set<string>();
  // Every build gets fresh content, so the engine's build cache cannot hide a step's output.
  const nonce = randomBytes(6).toString('hex');

  async function context(files: FileMap, untracked: FileMap = {}): Promise<{ dir: string; files: string[] }> {
    const dir = await mkdtemp(join(tmpdir(), 'build-ctx-'));
    dirs.push(dir);
    await copyBusybox(dir);
    await writeFiles(dir, files);
    await writeFiles(dir, untracked);
    return { dir, files: ['busybox', ...Object.keys(files)] };
  }

  async function build(ctx: { dir: string; files: string[] }, req: Partial<BuildRequest> = {}): Promise<{ imageId: string; lines: string[] }> {
    const lines: string[] = [];
    const requested = req.tags ?? [`${repoName}:${randomBytes(4).toString('hex')}`];
    for (const t of requested) tags.add(t);
    const { imageId } = await builder.build({
      contextDir: ctx.dir,
      files: ctx.files,
      dockerfile: 'Dockerfile',
      args: {},
      target: undefined,
      labels: { [TEST_LABEL]: '1' },
      tags: requested,
      signal: new AbortController().signal,
      log: (l) => lines.push(l),
      // These pin the classic builder (what `docker build` with DOCKER_BUILDKIT=0 does);
      // BuildKit has its own suite, buildkit-compat.test.ts.
      builder: 'classic',
      ...req,
    });
    return { imageId, lines };
  }

  async function buildError(ctx: { dir: string; files: string[] }): Promise<{ err: DeployerError; lines: string[] }> {
    const lines: string[] = [];
    const err = await build(ctx, { log: (l) => lines.push(l) }).then(
      () => {
        throw new Error('the build succeeded');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeployerError);
    return { err: err as DeployerError, lines };
  }

  /** What `docker build` (classic builder, CLI side) says for the same context. */
  async function cliBuild(dir: string): Promise<{ ok: boolean; output: string }> {
    const tag = `${repoName}:cli-${randomBytes(4).toString('hex')}`;
    tags.add(tag);
    try {
      // No --no-cache: a failed build would leave its uncached steps behind as dangling images.
      return { ok: true, output: await dockerCli(['build', '--label', `${TEST_LABEL}=1`, '-t', tag, dir]) };
    } catch (err) {
      return { ok: false, output: (err as Error).message };
    }
  }

  const inspect = async (ref: string) => (await docker.getImage(ref).inspect()) as unknown as InspectedImage;

  beforeAll(async () => {
    await cleanupLeftovers();
  });

  afterAll(async () => {
    for (const t of tags) await docker.getImage(t).remove().catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('applies .dockerignore as `docker build` does, always sends the Dockerfile, never sends untracked files', async () => {
    const files: FileMap = {
      Dockerfile: [
        ...BUSYBOX_HEAD,
        'COPY . /ctx',
        // The ignored secret must not have reached the daemon at all.
        'RUN test ! -e /ctx/secret.txt && test ! -e /ctx/untracked.txt',
        'RUN find /ctx -type f | sort | sed "s/^/CTX /"',
        '',
      ].join('\n'),
      // The Dockerfile itself is listed: it must still be sent (else the daemon cannot build).
      '.dockerignore': ['# build context rules', 'Dockerfile', 'secret.txt', '*.log', '!important.log', 'private', '**/*.tmp', 'docs/*.md', '!docs/keep.md', ''].join('\n'),
      'keep.txt': `${nonce}\n`,
      'secret.txt': 'do not ship\n',
      'debug.log': 'x\n',
      'important.log': 'x\n',
      'private/key.pem': 'x\n',
      'private/inner/more.txt': 'x\n',
      'a/b/c.tmp': 'x\n',
      'top.tmp': 'x\n',
      'docs/readme.md': 'x\n',
      'docs/keep.md': 'x\n',
      'docs/sub/deep.md': 'x\n',
      'www/index.html': 'x\n',
    };
    const ctx = await context(files, { 'untracked.txt': 'not in git\n', 'www/untracked.html': 'not in git\n' });
    const { lines } = await build(ctx);
    const listing = (text: string[]) => text.filter((l) => l.startsWith('CTX ')).map((l) => l.slice(4));
    const expected = ['.dockerignore', 'busybox', 'docs/keep.md', 'docs/sub/deep.md', 'important.log', 'keep.txt', 'www/index.html'].map((f) => `/ctx/${f}`);
    expect(lines).toContain('sending build context (8 files) to the classic builder');
    expect(listing(lines)).toEqual(expected);

    // The same tracked files through the docker CLI (which sends whatever is on disk);
    // keep.txt differs so that COPY . /ctx misses the cache our build just filled.
    const cliCtx = await context({ ...files, 'keep.txt': `${nonce} cli\n` });
    const cli = await cliBuild(cliCtx.dir);
    expect(cli.ok).toBe(true);
    expect(listing(cli.output.split('\n'))).toEqual(expected);
  });

  it('passes build args and builds only up to the target stage, from a Dockerfile in a subfolder', async () => {
    const greeting = `hello-${nonce}`;
    const ctx = await context({
      'docker/Dockerfile.multi': [
        'FROM scratch AS base',
        'COPY busybox /bin/busybox',
        'RUN ["/bin/busybox","--install","-s","/bin"]',
        'ARG GREETING=unset',
        'RUN echo "$GREETING" > /greeting',
        'FROM base AS prod',
        'ARG GREETING=unset',
        'LABEL greeting=$GREETING stage=prod',
        'RUN test "$(cat /greeting)" = "$GREETING"',
        // Built only if the target is ignored: then the whole build fails.
        'FROM base AS debug',
        'LABEL stage=debug',
        'RUN echo "the debug stage must not be built"; exit 7',
        '',
      ].join('\n'),
      // The Dockerfile's own folder is ignored: the Dockerfile is sent all the same.
      '.dockerignore': 'docker\n',
    });
    const { imageId } = await build(ctx, { dockerfile: 'docker/Dockerfile.multi', args: { GREETING: greeting }, target: 'prod' });
    const img = await inspect(imageId);
    expect(img.Config.Labels).toMatchObject({ greeting, stage: 'prod', [TEST_LABEL]: '1' });
  });

  it('labels the image with its revision and source, and gives it every requested tag', async () => {
    const sha = createHash('sha1').update(nonce).digest('hex');
    const requested = [`${repoName}:${sha}`, `${repoName}:live`, `${repoName}-other:extra-${nonce}`];
    const ctx = await context({ Dockerfile: [...BUSYBOX_HEAD, 'COPY www /www', ''].join('\n'), 'www/index.html': `${nonce}\n` });
    const { imageId, lines } = await build(ctx, {
      tags: requested,
      labels: {
        [TEST_LABEL]: '1',
        'org.opencontainers.image.revision': sha,
        'org.opencontainers.image.source': 'https://github.com/acme/site',
      },
    });
    expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    for (const ref of requested) expect((await inspect(ref)).Id).toBe(imageId);
    const img = await inspect(imageId);
    expect([...(img.RepoTags ?? [])].sort()).toEqual([...requested].sort());
    expect(img.Config.Labels).toMatchObject({
      'org.opencontainers.image.revision': sha,
      'org.opencontainers.image.source': 'https://github.com/acme/site',
    });
    expect(lines.at(-1)).toBe(`built ${imageId.slice(0, 19)} as ${requested.join(', ')}`);
  });

  it('rejects a Dockerfile syntax error with build_failed and the daemon\'s own message', async () => {
    const ctx = await context({ Dockerfile: 'FROMM scratch\n' });
    const { err } = await buildError(ctx);
    expect(err.code).toBe('build_failed');
    // 20.10: "dockerfile parse error line 1: …"; 26: "… on line 1: … (did you mean FROM?)".
    expect(err.message).toMatch(/^dockerfile parse error (on )?line 1: unknown instruction: FROMM/);
    const cli = await cliBuild(ctx.dir);
    expect(cli.ok).toBe(false);
    expect(cli.output).toContain(`Error response from daemon: ${err.message}`);
  });

  it('rejects a COPY of a missing file with build_failed and the daemon\'s own message', async () => {
    const ctx = await context({ Dockerfile: ['FROM scratch', 'COPY missing.txt /missing.txt', ''].join('\n') });
    const { err, lines } = await buildError(ctx);
    expect(err.code).toBe('build_failed');
    expect(err.message).toBe('COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist');
    expect(lines).toContain(err.message);
    const cli = await cliBuild(ctx.dir);
    expect(cli.ok).toBe(false);
    expect(cli.output).toContain(err.message);
  });

  it('rejects a COPY of an untracked file (present on disk, not in `files`) the same way', async () => {
    const ctx = await context({ Dockerfile: ['FROM scratch', 'COPY untracked.txt /x', ''].join('\n') }, { 'untracked.txt': 'on disk only\n' });
    const { err } = await buildError(ctx);
    expect(err.code).toBe('build_failed');
    expect(err.message).toMatch(/^COPY failed: file not found in build context .*untracked\.txt/);
  });

  it('rejects a failing RUN with build_failed and the daemon\'s own message; its output is logged', async () => {
    const ctx = await context({ Dockerfile: [...BUSYBOX_HEAD, `RUN echo "about to fail ${nonce}"; exit 3`, ''].join('\n') });
    const { err, lines } = await buildError(ctx);
    expect(err.code).toBe('build_failed');
    const daemonMessage = `The command '/bin/sh -c echo "about to fail ${nonce}"; exit 3' returned a non-zero code: 3`;
    // The daemon's message, then what the step printed last.
    expect(err.message).toBe(`${daemonMessage} — last output: about to fail ${nonce}`);
    expect(lines).toContain(`about to fail ${nonce}`);
    const cli = await cliBuild(ctx.dir);
    expect(cli.ok).toBe(false);
    expect(cli.output).toContain(daemonMessage);
  });

  describe('DockerPusher against an htpasswd registry', () => {
    let registry: TestRegistry;
    let repository: string;

    beforeAll(async () => {
      registry = await startRegistry({ auth: true });
      repository = `${registry.host}/${repoName}`;
      const ctx = await context({ Dockerfile: [...BUSYBOX_HEAD, 'COPY www /www', ''].join('\n'), 'www/index.html': `push ${nonce}\n` });
      await build(ctx, { tags: [`${repository}:v1`, `${repository}:v2`] });
    });

    afterAll(async () => {
      await registry?.stop();
    });

    const pusher = (password: string | undefined) =>
      new DockerPusher(docker, [{ host: registry.host, username: password === undefined ? undefined : registry.username, password: password === undefined ? undefined : new Secret(password) }]);

    async function manifest(tag: string, method: 'HEAD' | 'GET'): Promise<Response> {
      return fetch(`http://${registry.host}/v2/${repoName}/manifests/${tag}`, {
        method,
        headers: {
          accept: MANIFEST_V2,
          authorization: `Basic ${Buffer.from(`${registry.username}:${registry.password}`).toString('base64')}`,
        },
      });
    }

    it('pushes with the right credentials and returns the digest the registry serves for the tag', async () => {
      const lines: string[] = [];
      const { digest } = await pusher(registry.password).push({ repository, registry: registry.host, tag: 'v1', signal: new AbortController().signal, log: (l) => lines.push(l) });
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

      const head = await manifest('v1', 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers.get('docker-content-digest')).toBe(digest);
      const get = await manifest('v1', 'GET');
      expect(get.headers.get('content-type')).toBe(MANIFEST_V2);
      const body = Buffer.from(await get.arrayBuffer());
      expect(`sha256:${createHash('sha256').update(body).digest('hex')}`).toBe(digest);

      expect(lines.at(-1)).toBe(`pushed ${repository}:v1 ${digest}`);
      expect(lines.join('\n')).not.toContain(registry.password);
    });

    it('rejects a wrong password with registry_auth, not retryable, and leaks no password', async () => {
      const wrong = `wrong-${randomBytes(9).toString('hex')}`;
      const lines: string[] = [];
      const err = await pusher(wrong)
        .push({ repository, registry: registry.host, tag: 'v2', signal: new AbortController().signal, log: (l) => lines.push(l) })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DeployerError);
      const e = err as DeployerError;
      expect(e.code).toBe('registry_auth');
      expect(e.retryable).toBe(false);
      expect(e.message).toMatch(/unauthorized|authentication required|denied/i);
      for (const secret of [wrong, registry.password]) {
        expect(e.message).not.toContain(secret);
        expect(lines.join('\n')).not.toContain(secret);
      }
      // Nothing reached the registry under that tag.
      expect((await manifest('v2', 'HEAD')).status).toBe(404);
    });

    it('rejects a push without configured credentials with registry_auth too', async () => {
      const err = await pusher(undefined)
        .push({ repository, registry: registry.host, tag: 'v2', signal: new AbortController().signal, log: () => undefined })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DeployerError);
      // The daemon says "no basic auth credentials": retrying cannot help either.
      expect((err as DeployerError).message).toBe('no basic auth credentials');
      expect((err as DeployerError).code).toBe('registry_auth');
      expect((err as DeployerError).retryable).toBe(false);
    });
  });
});
