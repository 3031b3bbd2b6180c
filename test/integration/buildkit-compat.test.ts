import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { DockerBuilder } from '../../src/docker/build.ts';
import { createDocker } from '../../src/docker/client.ts';
import { DockerPusher } from '../../src/docker/push.ts';
import { DeployerError } from '../../src/lib/errors.ts';
import { Secret } from '../../src/lib/secret.ts';
import type { BuildRequest } from '../../src/pipeline/ports.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
import { waitForRun } from '../helpers/runs.ts';
import { createWorld, disposeQueues, pushCommit, type World } from '../helpers/world.ts';
import { forgetBuildCache, removeRepositoryImages } from '../support/build-cache.ts';
import { baseEnv, run } from '../support/exec.ts';
import { copyBusybox, writeFiles, type FileMap } from '../support/site.ts';
import { TEST_LABEL, dockerCli, serviceImage, uniqueName, waitForContent } from '../support/swarm.ts';

const docker = createDocker(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock');
const REPO = 'acme/ocaml-site';
const BUSYBOX = ['COPY busybox /bin/busybox', 'RUN ["/bin/busybox","--install","-s","/bin"]'];
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * What real Dockerfiles ask for, built by BuildKit through the Engine API on the real
 * engine (no Docker Hub: everything FROM scratch around static busybox, or FROM a
 * private base image in the test registry). One world for the file: an htpasswd
 * registry, a git repository, a swarm service; the end-to-end parts go through a real
 * daemon (webhook → build → push → deploy).
 */
describe('BuildKit builds (real engine, registry, swarm)', () => {
  let world: World;
  let withCreds: DockerBuilder;
  let noCreds: DockerBuilder;
  let base: string;
  const repos = new Set<string>();
  const dirs: string[] = [];
  const nonce = randomBytes(6).toString('hex');

  beforeAll(async () => {
    world = await createWorld({ name: 'bk', services: ['bk-www'] });
    const registries = [{ host: world.registry.host, username: world.registry.username, password: new Secret(world.registry.password) }];
    withCreds = new DockerBuilder(docker, registries);
    noCreds = new DockerBuilder(docker, []);
    // A private base image: busybox, in the password-protected registry only.
    base = `${world.registry.host}/${uniqueName('bk-base')}`;
    repos.add(base);
    await build(withCreds, { Dockerfile: ['FROM scratch', ...BUSYBOX, ''].join('\n') }, { tags: [`${base}:1`] });
    await new DockerPusher(docker, registries).push({ repository: base, registry: world.registry.host, tag: '1', signal: AbortSignal.timeout(60_000), log: () => undefined });
    await removeRepositoryImages(base);
  });

  afterAll(async () => {
    // The service first: an image a container still runs cannot be removed.
    await world?.dispose();
    for (const r of repos) await removeRepositoryImages(r).catch(() => undefined);
    // This file's steps in the engine's build cache (each names the nonce), cache mounts included.
    await forgetBuildCache(nonce).catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function context(files: FileMap): Promise<{ dir: string; files: string[] }> {
    const dir = await mkdtemp(join(tmpdir(), 'bk-ctx-'));
    dirs.push(dir);
    await copyBusybox(dir);
    await writeFiles(dir, files);
    return { dir, files: ['busybox', ...Object.keys(files)] };
  }

  /** Builds `files` (plus busybox) and returns the image id and the log lines. */
  async function build(builder: DockerBuilder, files: FileMap, req: Partial<BuildRequest> = {}): Promise<{ imageId: string; tag: string; lines: string[] }> {
    const ctx = await context(files);
    const repo = `bk-compat-${nonce}`;
    repos.add(repo);
    const tag = req.tags?.[0] ?? `${repo}:${randomBytes(4).toString('hex')}`;
    const lines: string[] = [];
    const { imageId } = await builder.build({
      contextDir: ctx.dir,
      files: ctx.files,
      dockerfile: 'Dockerfile',
      args: {},
      target: undefined,
      labels: { [TEST_LABEL]: '1' },
      tags: [tag],
      signal: AbortSignal.timeout(120_000),
      log: (l) => lines.push(l),
      cacheFrom: [],
      ...req,
    });
    return { imageId, tag, lines };
  }

  async function buildError(builder: DockerBuilder, files: FileMap, req: Partial<BuildRequest> = {}): Promise<{ err: DeployerError; lines: string[] }> {
    const lines: string[] = [];
    const err = await build(builder, files, { ...req, log: (l) => lines.push(l) }).then(
      () => new Error('the build succeeded'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeployerError);
    return { err: err as DeployerError, lines };
  }

  /** Runs a command in a container of the image (the image's behaviour, not its metadata). */
  const inImage = (ref: string, script: string) => dockerCli(['run', '--rm', '--label', `${TEST_LABEL}=1`, ref, 'sh', '-c', script], { registry: world.registry });
  const inspect = async (ref: string) => (await docker.getImage(ref).inspect()) as unknown as { Architecture: string; Config: { Labels: Record<string, string>; Healthcheck?: Record<string, unknown> } };

  describe('one build per feature', () => {
    it('build args, SOURCE_COMMIT, the platform args (TARGETOS/TARGETARCH name a stage), FROM --platform=$BUILDPLATFORM', async () => {
      const { tag } = await build(
        withCreds,
        {
          Dockerfile: [
            'FROM --platform=$BUILDPLATFORM scratch AS tools',
            ...BUSYBOX,
            'ARG BUILDPLATFORM',
            'ARG TARGETPLATFORM',
            'RUN echo "built on $BUILDPLATFORM for $TARGETPLATFORM" > /cross',
            'FROM scratch AS runner-linux-amd64',
            ...BUSYBOX,
            // An invalid reference under the classic builder, where these args are empty.
            'FROM runner-${TARGETOS}-${TARGETARCH}',
            ...['GREETING=unset', 'SOURCE_COMMIT', 'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH'].map((a) => `ARG ${a}`),
            'COPY --from=tools /cross /cross',
            'RUN echo "greeting=$GREETING commit=$SOURCE_COMMIT platform=$TARGETPLATFORM os=$TARGETOS arch=$TARGETARCH" > /info',
            '',
          ].join('\n'),
        },
        { args: { GREETING: `hello-${nonce}`, SOURCE_COMMIT: `c0ffee${nonce}` } },
      );
      expect(await inImage(tag, 'cat /info /cross')).toBe(`greeting=hello-${nonce} commit=c0ffee${nonce} platform=linux/amd64 os=linux arch=amd64\nbuilt on linux/amd64 for linux/amd64\n`);
    });

    it('--target builds only the stages it needs: an unused failing stage and a later failing one are skipped', async () => {
      const { tag, lines } = await build(
        withCreds,
        {
          Dockerfile: [
            'FROM scratch AS base',
            ...BUSYBOX,
            'FROM base AS unused',
            'RUN echo never; exit 9',
            'FROM base AS prod',
            `RUN echo prod-${nonce} > /stage`,
            'FROM prod AS debug',
            'RUN echo never; exit 7',
            '',
          ].join('\n'),
        },
        { target: 'prod' },
      );
      expect(await inImage(tag, 'cat /stage')).toBe(`prod-${nonce}\n`);
      expect(lines.some((l) => /\[(unused|debug) /.test(l))).toBe(false);
      expect(lines).toContainEqual(expect.stringMatching(/^#\d+ \[prod 1\/1\] RUN echo prod-/));
    });

    it('cache mounts persist between builds', async () => {
      const dockerfile = (round: number) =>
        [
          'FROM scratch',
          ...BUSYBOX,
          // A new value per build: the step runs again, with the same cache mount.
          // The nonce in the command makes the step new (a cache mount's id is not part of its key).
          `RUN --mount=type=cache,id=bk-cache-${nonce},target=/cache echo "round ${round} ${nonce}" >> /cache/rounds && wc -l < /cache/rounds > /count && cat /cache/rounds`,
          '',
        ].join('\n');
      const first = await build(withCreds, { Dockerfile: dockerfile(1) });
      const second = await build(withCreds, { Dockerfile: dockerfile(2) });
      const probe = 'cat /count; test -e /cache/rounds && echo "cache in the image" || echo "cache not in the image"';
      expect(await inImage(first.tag, probe)).toBe('1\ncache not in the image\n');
      // The cache itself is not in the image; what the step saw of it is.
      expect(await inImage(second.tag, probe)).toBe('2\ncache not in the image\n');
      expect(second.lines).toContainEqual(expect.stringMatching(new RegExp(`^#\\d+ round 1 ${nonce}$`)));
    });

    it('bind mounts from another stage: read during the step, absent from the image', async () => {
      const { tag } = await build(withCreds, {
        Dockerfile: [
          'FROM scratch AS tools',
          ...BUSYBOX,
          `RUN mkdir /out && echo "made by tools ${nonce}" > /out/made`,
          'FROM scratch',
          ...BUSYBOX,
          'RUN --mount=type=bind,from=tools,source=/out,target=/mnt/tools cp /mnt/tools/made /copied',
          '',
        ].join('\n'),
      });
      expect(await inImage(tag, 'cat /copied; ls /mnt/tools 2>/dev/null | wc -l')).toBe(`made by tools ${nonce}\n0\n`);
    });

    it('COPY --chmod and --link, heredocs, HEALTHCHECK --start-interval (which the classic builder rejects)', async () => {
      const files: FileMap = {
        Dockerfile: [
          'FROM scratch',
          ...BUSYBOX,
          'COPY --chmod=0751 tool.sh /usr/local/bin/tool',
          'COPY --link www /www',
          'RUN <<EOT',
          'set -e',
          'mkdir -p /etc/site',
          `echo "heredoc ${nonce}" > /etc/site/conf`,
          'EOT',
          'HEALTHCHECK --interval=30s --start-period=5s --start-interval=1s CMD true',
          '',
        ].join('\n'),
        'tool.sh': '#!/bin/sh\necho tool ran\n',
        'www/index.html': `linked ${nonce}\n`,
      };
      const { tag } = await build(withCreds, files);
      expect(await inImage(tag, 'stat -c %a /usr/local/bin/tool; tool; cat /www/index.html /etc/site/conf')).toBe(`751\ntool ran\nlinked ${nonce}\nheredoc ${nonce}\n`);
      expect((await inspect(tag)).Config.Healthcheck).toMatchObject({ StartInterval: 1_000_000_000, StartPeriod: 5_000_000_000 });
      const classic = await buildError(withCreds, files, { builder: 'classic' });
      expect(classic.err.code).toBe('build_failed');
      // 20.10: "Unknown flag: chmod"; 26: "the --chmod option requires BuildKit".
      expect(classic.err.message).toMatch(/unknown flag: (chmod|link)|--(chmod|link) option requires BuildKit/i);
    });

    it('build.platform is passed through: an arm64 image from a build without RUN steps', async () => {
      const { tag } = await build(
        withCreds,
        { Dockerfile: ['FROM scratch', 'ARG TARGETARCH', 'LABEL arch=$TARGETARCH', 'COPY busybox /bin/busybox', ''].join('\n') },
        { platform: 'linux/arm64' },
      );
      const img = await inspect(tag);
      expect(img.Architecture).toBe('arm64');
      expect(img.Config.Labels.arch).toBe('arm64');
    });
  });

  describe('private base images', () => {
    const child = () => ({ Dockerfile: [`FROM ${base}:1`, `RUN echo "child of the private base ${nonce}" > /child`, ''].join('\n') });

    it('BuildKit pulls FROM images with the credentials of `registries` (asked per host over the session)', async () => {
      await removeRepositoryImages(base);
      const { tag, lines } = await build(withCreds, child());
      expect(await inImage(tag, 'cat /child')).toBe(`child of the private base ${nonce}\n`);
      expect(lines).toContain(`registry ${world.registry.host}: using the configured credentials`);
      expect(lines.join('\n')).not.toContain(world.registry.password);
    });

    it('without credentials BuildKit fails with registry_auth, not retryable', async () => {
      await removeRepositoryImages(base);
      const { err, lines } = await buildError(noCreds, child());
      expect(lines).toContain(`registry ${world.registry.host}: no credentials configured, pulling anonymously`);
      expect(err.code).toBe('registry_auth');
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(new RegExp(`load metadata for ${base}:1.*401 Unauthorized`));
    });

    it('the classic builder pulls with X-Registry-Config, and fails with registry_auth without it', async () => {
      await removeRepositoryImages(base);
      const without = await buildError(noCreds, child(), { builder: 'classic' });
      expect(without.err.code).toBe('registry_auth');
      expect(without.err.message).toMatch(/no basic auth credentials|unauthorized/);
      const { tag } = await build(withCreds, child(), { builder: 'classic' });
      expect(await inImage(tag, 'cat /child')).toBe(`child of the private base ${nonce}\n`);
    });
  });

  describe('failures and the session', () => {
    it('a failing RUN in one of two parallel stages: the error names the step, command, exit code and last output; the other is cancelled', async () => {
      const { err, lines } = await buildError(withCreds, {
        Dockerfile: [
          'FROM scratch AS base',
          ...BUSYBOX,
          'FROM base AS slow',
          `RUN echo slow-${nonce}; sleep 30`,
          'FROM base AS broken',
          `RUN echo "compiling ${nonce}"; echo "error: missing semicolon" >&2; exit 4`,
          'FROM base',
          'COPY --from=slow /bin/busybox /a',
          'COPY --from=broken /bin/busybox /b',
          '',
        ].join('\n'),
      });
      expect(err.code).toBe('build_failed');
      expect(err.retryable).toBe(false);
      expect(err.message.slice(0, err.message.indexOf(' — last output: ') + ' — last output: '.length)).toBe(
        `[broken 1/1] RUN echo "compiling ${nonce}"; echo "error: missing semicolon" >&2; exit 4: ` +
          `process "/bin/sh -c echo \\"compiling ${nonce}\\"; echo \\"error: missing semicolon\\" >&2; exit 4" did not complete successfully: exit code: 4` +
          // stdout and stderr are separate pipes: their relative order is not fixed.
          ` — last output: `,
      );
      expect(err.message.split(' — last output: ')[1]!.split(' ⏎ ').sort()).toEqual([`compiling ${nonce}`, 'error: missing semicolon']);
      const slow = lines.find((l) => /^#\d+ \[slow 1\/1\]/.test(l))!.split(' ')[0];
      expect(lines).toContain(`${slow} CANCELED`);
    });

    it('the session outlives BuildKit\'s health checks: a secret used after 12 s of building still arrives; a missing one is named', async () => {
      const token = `tok-${randomBytes(12).toString('hex')}`;
      const dockerfile = [
        'FROM scratch',
        ...BUSYBOX,
        `RUN sleep 12 # ${nonce}`,
        // The nonce makes this step new: neither the secret's value nor the unchanged
        // filesystem left by `sleep` would (BuildKit keys steps by content).
        `RUN --mount=type=secret,id=token,required=true sha256sum /run/secrets/token | cut -c1-64 > /token.sha # ${nonce}`,
        '',
      ].join('\n');
      const { tag, lines } = await build(withCreds, { Dockerfile: dockerfile }, { secrets: { token: new Secret(token) } });
      expect(await inImage(tag, 'cat /token.sha')).toBe(`${createHash('sha256').update(token).digest('hex')}\n`);
      expect(lines.join('\n')).not.toContain(token);

      // BuildKit quirk (docs/docker-notes.md): a secret's value is not part of the step's
      // cache key, so a rotated secret alone does not rebuild the steps that use it.
      const rotated = await build(withCreds, { Dockerfile: dockerfile }, { secrets: { token: new Secret(`${token}-rotated`) } });
      expect(rotated.lines).toContainEqual(expect.stringMatching(/^#\d+ CACHED$/));
      expect(await inImage(rotated.tag, 'cat /token.sha')).toBe(`${createHash('sha256').update(token).digest('hex')}\n`);

      const missing = await buildError(withCreds, { Dockerfile: ['FROM scratch', ...BUSYBOX, 'RUN --mount=type=secret,id=nope,required=true cat /run/secrets/nope', ''].join('\n') }, { secrets: { token: new Secret(token) } });
      expect(missing.err.code).toBe('build_failed');
      expect(missing.err.message).toMatch(/secret nope.*not found/);
      expect(missing.lines).toContain('warning: the build asked for secret "nope", which build.secrets does not define');
    });

    it('BuildKit clips a step that prints faster than 200 KiB/s, and the log says so', async () => {
      const { lines } = await build(withCreds, { Dockerfile: ['FROM scratch', ...BUSYBOX, `RUN seq 1 200000 # ${nonce}`, ''].join('\n') });
      const step = lines.find((l) => l.includes(`RUN seq 1 200000 # ${nonce}`))!.split(' ')[0]!;
      expect(lines).toContain(`${step} [output clipped, log limit 200KiB/s reached]`);
      const printed = lines.filter((l) => new RegExp(`^${step} \\d+$`).test(l)).length;
      expect(printed).toBeGreaterThan(0);
      expect(printed).toBeLessThan(200_000);
    });

    it('on an engine that advises the classic builder, builds with it and says why', async () => {
      const proxy = await startPingRewriter({ 'builder-version': '1' });
      try {
        const { tag, lines } = await build(new DockerBuilder(createDocker(proxy.host), []), { Dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', ''].join('\n') });
        expect(lines[0]).toBe('building with the classic builder: the engine does not offer BuildKit (it advertises Builder-Version 1 (BuildKit turned off in its daemon.json))');
        expect(lines).toContain('sending build context (2 files) to the classic builder');
        expect(lines).toContainEqual(expect.stringMatching(/^Step 2\/3 : COPY busybox \/bin\/busybox$/));
        expect((await inspect(tag)).Config.Labels[TEST_LABEL]).toBe('1');
      } finally {
        await proxy.stop();
      }
    });
  });

  it('layer cache survives a new build host: unchanged steps come from the registry image\'s inline cache', async () => {
    const registries = [{ host: world.registry.host, username: world.registry.username, password: new Secret(world.registry.password) }];
    const image = `${world.registry.host}/${uniqueName('bk-cache')}`;
    repos.add(image);
    const marker = `cache-${nonce}`;
    const files: FileMap = {
      Dockerfile: [
        'FROM scratch AS deps',
        ...BUSYBOX,
        `RUN echo "${marker} deps" > /deps; sleep 2`,
        'FROM deps',
        'ARG SOURCE_COMMIT',
        'RUN echo "$SOURCE_COMMIT" > /rev',
        '',
      ].join('\n'),
    };
    const step = (lines: string[]) => {
      const n = lines.find((l) => l.includes(`RUN echo "${marker} deps"`))!.split(' ')[0]!;
      return lines.filter((l) => l.startsWith(`${n} `) && !l.includes(marker));
    };
    const cold = await build(withCreds, files, { tags: [`${image}:live`], args: { SOURCE_COMMIT: 'one' }, cacheFrom: [`${image}:live`] });
    expect(step(cold.lines)).toContainEqual(expect.stringMatching(/ DONE \d+\.\d+s$/));
    // Nothing to import yet: BuildKit reports a failed step and builds on (a warning here).
    expect(cold.lines).toContainEqual(expect.stringMatching(/^#\d+ WARN: building without this cache: failed to configure registry cache importer: .*:live: not found$/));
    await new DockerPusher(docker, registries).push({ repository: image, registry: world.registry.host, tag: 'live', signal: AbortSignal.timeout(60_000), log: () => undefined });

    // A fresh host: neither the image nor the cache of its steps.
    await removeRepositoryImages(image);
    expect(await forgetBuildCache(marker)).toBeGreaterThan(0);
    const warm = await build(withCreds, files, { tags: [`${image}:two`], args: { SOURCE_COMMIT: 'two' }, cacheFrom: [`${image}:live`] });
    expect(warm.lines).toContainEqual(expect.stringMatching(/^#\d+ importing cache manifest from .*:live$/));
    // The step's layer is pulled from the registry, not run.
    const warmStep = step(warm.lines);
    expect(warmStep).toContainEqual(expect.stringMatching(/^#\d+ CACHED$/));
    expect(warmStep).toContainEqual(expect.stringMatching(/^#\d+ pulling sha256:[0-9a-f]{64} done$/));
    expect(warmStep.some((l) => / DONE /.test(l))).toBe(false);
    expect(await inImage(`${image}:two`, 'cat /deps /rev')).toBe(`${marker} deps\ntwo\n`);

    // The control: the same fresh host without cachefrom rebuilds the step.
    await removeRepositoryImages(image);
    await forgetBuildCache(marker);
    const control = await build(withCreds, files, { tags: [`${image}:three`], args: { SOURCE_COMMIT: 'three' }, cacheFrom: [] });
    expect(step(control.lines)).toContainEqual(expect.stringMatching(/ DONE \d+\.\d+s$/));
    await removeRepositoryImages(image);
    await forgetBuildCache(marker);
  });

  describe('through the daemon (webhook → build → push → deploy)', () => {
    let config: Config;
    let daemon: Daemon;
    let url: string;
    let secretDir: string;
    const npmToken = `npm_${randomBytes(16).toString('hex')}`;
    const apiKey = `key-${randomBytes(16).toString('hex')}`;

    beforeAll(async () => {
      secretDir = await mkdtemp(join(tmpdir(), 'bk-secret-'));
      dirs.push(secretDir);
      await writeFile(join(secretDir, 'npm_token'), npmToken);
      config = testConfig({
        registry: world.registryConfig,
        env: { BK_API_KEY: apiKey },
        pipelines: [
          {
            name: 'site', repo: REPO, url: world.repo.url, branch: 'main', image: world.image, tag: 'live', services: [world.services[0]!],
            deploy: { monitor: '500ms', timeout: '90s' },
            build: { args: { BASE: `${base}:1` }, secrets: { npm_token: { file: join(secretDir, 'npm_token') }, api_key: { env: 'BK_API_KEY' } } },
          },
          { name: 'parallel', repo: REPO, url: world.repo.url, branch: 'parallel', image: `${world.image}-parallel`, services: [] },
          { name: 'lines', repo: REPO, url: world.repo.url, branch: 'lines', image: `${world.image}-lines`, services: [] },
          { name: 'lines-classic', repo: REPO, url: world.repo.url, branch: 'lines', image: `${world.image}-lines-classic`, services: [], build: { builder: 'classic' } },
        ],
      });
      for (const r of [world.image, `${world.image}-parallel`, `${world.image}-lines`, `${world.image}-lines-classic`]) repos.add(r);
      daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
      url = daemon.url!;
    });

    afterAll(async () => {
      await daemon?.close();
      if (config) await disposeQueues(config);
    });

    const runLog = async (id: string) => (await fetch(`${url}/api/runs/${id}/log`, { headers: auth })).text();

    /** An ocaml.org-shaped repository: a build stage on a private base, a runtime stage fed by COPY --from … --link. */
    const ocamlOrgShaped = (title: string): FileMap => ({
      Dockerfile: [
        'ARG BASE',
        'FROM $BASE AS build',
        'WORKDIR /home/opam',
        'COPY --chown=1000:1000 src/ src/',
        'ADD site/ ./site/',
        // The secret is used and printed (the log must mask it); only its hash stays in the image.
        'RUN --mount=type=secret,id=npm_token,required=true --mount=type=secret,id=api_key,required=true \\',
        '    cat /run/secrets/npm_token; echo; echo "key=$(cat /run/secrets/api_key)"; \\',
        '    cat /run/secrets/npm_token /run/secrets/api_key | sha256sum | cut -c1-64 > /home/opam/secrets.sha',
        'ARG SOURCE_COMMIT',
        'RUN sh src/build.sh site _build/www "$SOURCE_COMMIT" && stat -c "%u %g" src/build.sh > _build/www/owner',
        'FROM $BASE',
        'COPY --from=build --link /home/opam/_build/www /www',
        'COPY --from=build --link /home/opam/secrets.sha /secrets.sha',
        'COPY --link --chown=1000:1000 static /www/static',
        'USER 1000',
        'HEALTHCHECK --interval=2s --start-period=10s --start-interval=200ms CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1',
        'EXPOSE 8080',
        'CMD ["httpd","-f","-p","8080","-h","/www"]',
        '',
      ].join('\n'),
      'src/build.sh': 'set -e\nmkdir -p "$2"\nfor f in "$1"/*.md; do cat "$f"; done > "$2/body"\nprintf "%s rev=%s\\n" "$(cat "$2/body")" "$3" > "$2/index.html"\n',
      'site/index.md': title,
      'site/more/ignored.txt': 'in a subfolder: ADD copies directories whole\n',
      'static/app.css': 'body{}\n',
    });

    it('deploys an ocaml.org-shaped Dockerfile end to end: multi-stage, private base, COPY --from … --link, --chown, ADD of a directory, SOURCE_COMMIT baked in', async () => {
      // The page is new each run: BuildKit would otherwise reuse the secret step of an
      // earlier run (a secret's value is not part of a step's cache key).
      const { sha, runId } = await pushCommit(url, world, REPO, ocamlOrgShaped(`OCaml ${nonce}`), 'ocaml.org-shaped');
      const run = await waitForRun(url, runId, 240_000);
      expect(run.error).toBeNull();
      expect(run.status).toBe('succeeded');
      await waitForContent(world.services[0]!, `OCaml ${nonce} rev=${sha}\n`, 60_000);
      expect(await serviceImage(world.services[0]!)).toBe(run.image.ref);
      const ref = run.image.ref as string;
      expect(await inImage(ref, 'cat /www/owner; stat -c %u:%g /www/static/app.css; id -u; cat /secrets.sha')).toBe(
        `1000 1000\n1000:1000\n1000\n${createHash('sha256').update(npmToken + apiKey).digest('hex')}\n`,
      );
      const log = await runLog(run.id);
      expect(log).toContain(`#`); // plain progress
      expect(log).toMatch(/^#\d+ \[stage-1 2\/4\] COPY --from=build --link \/home\/opam\/_build\/www \/www$/m);
      expect(log).toMatch(/^#\d+ \[secret\]$/m);
      expect(log).toMatch(/^#\d+ key=\[secret\]$/m);

      // A secret never reaches the log, the store, an API response or the image.
      const texts: [string, string][] = [['log', log]];
      for (const path of [`/api/runs/${run.id}`, '/api/pipelines', '/api/pipelines/site', '/api/pipelines/site/runs', '/api/pipelines/site/deployments', `/api/runs/${run.id}/events?after=0`]) {
        texts.push([path, await (await fetch(`${url}${path}`, { headers: auth })).text()]);
      }
      for (const f of await readdir(config.dataDir)) {
        if (f.startsWith('deployer.db')) texts.push([f, (await readFile(join(config.dataDir, f))).toString('latin1')]);
      }
      texts.push(['docker history', await dockerCli(['history', '--no-trunc', '--format', '{{.CreatedBy}}', ref])]);
      const layers = await imageLayers(ref);
      expect(layers.length).toBeGreaterThan(3);
      // Not vacuous: the hash the build wrote is found in a layer, the secrets nowhere.
      expect(layers.some((l) => l.includes(createHash('sha256').update(npmToken + apiKey).digest('hex')))).toBe(true);
      for (const [i, l] of layers.entries()) texts.push([`layer ${i}`, l]);
      for (const [where, text] of texts) {
        expect(text.length, where).toBeGreaterThan(0);
        for (const secret of [npmToken, apiKey]) expect(text.includes(secret), `${where} contains a secret`).toBe(false);
      }
    });

    it('a failing RUN ends the run failed at build, with the failing command and its exit code in the error', async () => {
      const files = ocamlOrgShaped('broken');
      files['src/build.sh'] = 'echo "building $1"\necho "fatal: no such page" >&2\nexit 42\n';
      const { runId } = await pushCommit(url, world, REPO, files, 'broken build');
      const run = await waitForRun(url, runId, 240_000);
      expect(run.status).toBe('failed');
      const stage = run.stages.find((s: any) => s.name === 'build');
      expect(stage.status).toBe('failed');
      expect(stage.error).toMatch(/^\[build \d+\/\d+\] RUN sh src\/build\.sh .*: process "\/bin\/sh -c sh src\/build\.sh .*" did not complete successfully: exit code: 42 — last output: (building site ⏎ fatal: no such page|fatal: no such page ⏎ building site)$/);
      expect(run.error).toBe(`build: ${stage.error}`);
      expect(run.stages.filter((s: any) => s.name !== 'fetch' && s.name !== 'build').map((s: any) => s.status)).toEqual(['skipped', 'skipped']);
    });

    it('the run log of a two-stage parallel build has each stage\'s own lines, whole and prefixed by its step', async () => {
      const files: FileMap = {
        Dockerfile: [
          'FROM scratch AS base',
          ...BUSYBOX,
          'FROM base AS docs',
          `RUN for i in 1 2 3; do echo "docs line $i ${nonce}"; sleep 0.4; done`,
          'FROM base AS assets',
          `RUN for i in 1 2 3; do printf "assets line $i"; sleep 0.2; echo " ${nonce}"; sleep 0.2; done`,
          'FROM base',
          'COPY --from=docs /bin/busybox /d',
          'COPY --from=assets /bin/busybox /a',
          '',
        ].join('\n'),
      };
      const { runId } = await pushCommit(url, world, REPO, files, 'parallel', 'parallel');
      const run = await waitForRun(url, runId, 240_000);
      expect(run.status).toBe('succeeded');
      const log = (await runLog(run.id)).split('\n');
      const docs = log.find((l) => /^#\d+ \[docs 1\/1\] RUN/.test(l))!.split(' ')[0];
      const assets = log.find((l) => /^#\d+ \[assets 1\/1\] RUN/.test(l))!.split(' ')[0];
      expect(docs).not.toBe(assets);
      expect(log.filter((l) => l.includes(`line`) && l.includes(nonce))).toEqual(
        expect.arrayContaining([1, 2, 3].flatMap((i) => [`${docs} docs line ${i} ${nonce}`, `${assets} assets line ${i} ${nonce}`])),
      );
      expect(log.filter((l) => l.includes(nonce) && l.includes('line') && !l.startsWith('#'))).toEqual([]);
      // Parallel: the second stage started before the first one finished.
      const index = (line: string) => log.indexOf(line);
      const starts = [index(log.find((l) => l.startsWith(`${docs} [docs`))!), index(log.find((l) => l.startsWith(`${assets} [assets`))!)];
      const ends = [log.findIndex((l) => l.startsWith(`${docs} DONE`)), log.findIndex((l) => l.startsWith(`${assets} DONE`))];
      expect(Math.max(...starts)).toBeLessThan(Math.min(...ends));
    });

    it('a 60,000-line step leaves 60,000 whole lines in the stored log, with either builder', async () => {
      // 1,000 lines every 50 ms (~120 KB/s): under BuildKit's default output limit of
      // 200 KiB/s per step, which would clip a plain `seq 1 60000` (see the next test).
      const files: FileMap = { Dockerfile: ['FROM scratch', ...BUSYBOX, `RUN for i in $(seq 0 59); do seq $((i * 1000 + 1)) $((i * 1000 + 1000)); usleep 50000; done # ${nonce}`, ''].join('\n') };
      const { sha } = await pushCommit(url, world, REPO, files, '60k lines', 'lines');
      const res = await (await fetch(`${url}/api/pipelines/lines/runs?limit=5`, { headers: auth })).json();
      const bk = res.runs.find((r: any) => r.commit === sha);
      const classicRuns = await (await fetch(`${url}/api/pipelines/lines-classic/runs?limit=5`, { headers: auth })).json();
      const cl = classicRuns.runs.find((r: any) => r.commit === sha);
      // Both finished before either log is read: a download racing the other run's writes
      // is the store's business (issue #11), not this test's.
      const finished = [await waitForRun(url, bk.id, 240_000), await waitForRun(url, cl.id, 240_000)];
      for (const [done, prefix] of [[finished[0], /^#\d+ (\d+)$/], [finished[1], /^(\d+)$/]] as const) {
        expect(done.status).toBe('succeeded');
        const numbers = (await runLog(done.id))
          .split('\n')
          .map((l) => prefix.exec(l)?.[1])
          .filter((n): n is string => n !== undefined)
          .map(Number)
          .filter((n) => n >= 1);
        expect(numbers.length).toBe(60_000);
        expect(numbers.every((n, i) => n === i + 1)).toBe(true);
      }
    });
  });
});

/** The bytes of every layer of an image, as `docker save` writes them (uncompressed tars). */
async function imageLayers(ref: string): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-save-'));
  try {
    await dockerCli(['save', '-o', join(dir, 'image.tar'), ref]);
    await run('tar', ['-xf', join(dir, 'image.tar'), '-C', dir], { env: baseEnv() });
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
    const layers: string[] = [];
    for (const path of manifest[0]!.Layers) layers.push((await readFile(join(dir, path))).toString('latin1'));
    return layers;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A unix-socket proxy in front of the engine that answers `/_ping` with other headers:
 * the real engine, as it would present itself with BuildKit turned off.
 */
async function startPingRewriter(headers: Record<string, string>): Promise<{ host: string; stop(): Promise<void> }> {
  const target = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').slice('unix://'.length);
  const dir = await mkdtemp(join(tmpdir(), 'bk-proxy-'));
  const socketPath = join(dir, 'docker.sock');
  const server: Server = createServer((req, res) => {
    const upstream = request({ socketPath: target, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const out: IncomingHttpHeaders = { ...up.headers };
      if (/^(\/v[\d.]+)?\/_ping$/.test((req.url ?? '').split('?')[0]!)) Object.assign(out, headers);
      res.writeHead(up.statusCode ?? 502, out);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    host: `unix://${socketPath}`,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
