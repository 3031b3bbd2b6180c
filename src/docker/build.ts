import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import type { RegistryConfig } from '../config/types.ts';
import { DeployerError, errorMessage } from '../lib/errors.ts';
import type { Secret } from '../lib/secret.ts';
import { isTransient } from './transient.ts';
import type { BuildPort, BuildRequest } from '../pipeline/ports.ts';
import { registryConfigHeader, credentialsFor } from './auth.ts';
import { chooseBuilder, pingEngine } from './buildkit/engine.ts';
import { PlainProgress, type StepFailure } from './buildkit/progress.ts';
import { decodeStatus } from './buildkit/proto.ts';
import { openSession, type BuildSession } from './buildkit/session.ts';
import { packContext } from './context.ts';
import { secretMasker } from './secret-mask.ts';
import { LineBuffer, followJsonStream } from './stream.ts';

/** Messages of the classic builder itself (as opposed to a step's output). */
const BUILDER_MESSAGE = /^( ---> |Step \d+\/\d+ : |Successfully (built|tagged) |Removing intermediate container )/;
/** Output lines kept per classic step for the error of a failing one. */
const TAIL_LINES = 10;

/**
 * Builds through the Engine API: with BuildKit (`POST /build?version=2` plus a session
 * of our own for registry credentials and build secrets) or the classic builder.
 * Either way the log gets whole output lines, and a failure says which step failed,
 * why, and what it printed last.
 */
export class DockerBuilder implements BuildPort {
  readonly #docker: Docker;
  readonly #registries: RegistryConfig[];
  constructor(docker: Docker, registries: RegistryConfig[] = []) {
    this.#docker = docker;
    this.#registries = registries;
  }

  async build(req: BuildRequest): Promise<{ imageId: string }> {
    const [primary, ...extra] = req.tags;
    if (!primary) throw new DeployerError('build_failed', 'no tag to build');
    const secrets = new Map(Object.entries(req.secrets ?? {}));
    const mask = secretMasker(secrets.values());
    const log = secrets.size > 0 ? (line: string) => req.log(mask(line)) : req.log;

    let ping;
    try {
      ping = await pingEngine(this.#docker, req.signal);
    } catch (err) {
      throw new DeployerError('docker_unavailable', `the Docker engine does not answer: ${dockerMessage(err)}`, { cause: err, retryable: true });
    }
    const choice = chooseBuilder(req.builder ?? 'buildkit', ping);
    if (choice.reason) log(`building with the classic builder: the engine does not offer BuildKit (${choice.reason})`);
    if (choice.builder === 'classic' && secrets.size > 0) {
      throw new DeployerError('build_failed', `build secrets (${[...secrets.keys()].join(', ')}) need BuildKit, and this build uses the classic builder`);
    }

    const { stream: context, count } = await packContext(req.contextDir, req.files, req.dockerfile);
    log(`sending build context (${count} files) to the ${choice.builder === 'buildkit' ? 'BuildKit' : 'classic'} builder`);
    let imageId =
      choice.builder === 'buildkit'
        ? await this.#buildKit(req, primary, context, secrets, log, mask)
        : await this.#classic(req, primary, context, log);
    if (!imageId) imageId = ((await this.#docker.getImage(primary).inspect()) as { Id: string }).Id;
    for (const ref of extra) {
      const { repo, tag } = splitRef(ref);
      await this.#docker.getImage(imageId).tag({ repo, tag });
    }
    log(`built ${imageId.slice(0, 19)} as ${req.tags.join(', ')}`);
    return { imageId };
  }

  async #buildKit(req: BuildRequest, tag: string, context: Readable, secrets: Map<string, Secret>, log: (l: string) => void, mask: (l: string) => string): Promise<string> {
    const asked = new Set<string>();
    let session: BuildSession;
    try {
      session = await openSession(this.#docker, {
        secrets,
        credentials: (host) => credentialsFor(this.#registries, host),
        onRequest: ({ kind, name, found }) => {
          // Once per host or id: BuildKit asks again for every image and layer.
          const key = `${kind}:${name}`;
          if (asked.has(key)) return;
          asked.add(key);
          if (kind === 'secret' && !found) log(`warning: the build asked for secret "${name}", which build.secrets does not define`);
          if (kind === 'credentials') log(found ? `registry ${name}: using the configured credentials` : `registry ${name}: no credentials configured, pulling anonymously`);
        },
      });
    } catch (err) {
      context.destroy();
      throw new DeployerError('build_failed', `could not open a BuildKit session: ${dockerMessage(err)}`, { cause: err, retryable: isTransient(err) });
    }
    const progress = new PlainProgress(log);
    const other = new LineBuffer();
    let imageId = '';
    try {
      const response = await this.#post(req, context, {
        version: '2',
        session: session.id,
        t: tag,
        // Inline cache metadata in the image lets a later build on another host reuse
        // its layers through `cachefrom` (an explicit "0" in build.args turns it off).
        buildargs: { BUILDKIT_INLINE_CACHE: '1', ...req.args },
        ...(req.cacheFrom?.length ? { cachefrom: JSON.stringify(req.cacheFrom) } : {}),
      });
      await followJsonStream(
        response,
        (e) => {
          if (e.id === 'moby.buildkit.trace') {
            if (typeof e.aux === 'string') progress.push(decodeStatus(e.aux));
          } else if (e.id === 'moby.image.id') {
            const id = (e.aux as { ID?: unknown } | undefined)?.ID;
            if (typeof id === 'string') imageId = id;
          } else if (e.stream) {
            for (const line of other.push(e.stream)) log(line);
          }
        },
        req.signal,
      );
    } catch (err) {
      throw buildError(err, progress.failure(errorMessage(err)), mask);
    } finally {
      progress.finish();
      const rest = other.flush();
      if (rest) log(rest);
      session.close();
    }
    return imageId;
  }

  async #classic(req: BuildRequest, tag: string, context: Readable, log: (l: string) => void): Promise<string> {
    const lines = new LineBuffer();
    let step = '';
    let tail: string[] = [];
    const output = (line: string) => {
      log(line);
      if (/^Step \d+\/\d+ : /.test(line)) {
        step = line;
        tail = [];
      } else if (!line.startsWith(' ---> ')) {
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
      }
    };
    let imageId = '';
    try {
      const registryconfig = registryConfigHeader(this.#registries);
      const response = await this.#post(req, context, { t: tag, buildargs: req.args }, Object.keys(registryconfig).length ? registryconfig : undefined);
      await followJsonStream(
        response,
        (e) => {
          // Output arrives in chunks cut anywhere; a bare "\n" between steps is just a line end.
          if (e.stream) {
            // The builder's own messages are whole lines: output left unterminated before one is a line of its own.
            if (BUILDER_MESSAGE.test(e.stream)) {
              const rest = lines.flush();
              if (rest !== undefined) output(rest);
            }
            for (const line of lines.push(e.stream)) output(line);
          }
          // Base image pulls: the state changes, not every progress tick.
          else if (e.status && !e.progressDetail?.current) log(e.id ? `${e.id}: ${e.status}` : e.status);
          if (e.error) {
            const rest = lines.flush();
            if (rest !== undefined) output(rest);
            log(e.error.trimEnd());
          }
          const id = (e.aux as { ID?: unknown } | undefined)?.ID;
          if (typeof id === 'string') imageId = id;
        },
        req.signal,
      );
    } catch (err) {
      throw buildError(err, step ? { step: step.replace(/^Step \d+\/\d+ : /, ''), message: '', lastLines: tail } : undefined, (l) => l, false);
    } finally {
      const rest = lines.flush();
      if (rest !== undefined) output(rest);
    }
    return imageId;
  }

  /** POST /build with the options both builders share; resolves when the response starts. */
  async #post(req: BuildRequest, context: Readable, options: Record<string, unknown>, registryconfig?: Record<string, unknown>): Promise<Readable> {
    try {
      return await new Promise<Readable>((resolve, reject) => {
        this.#docker.modem.dial(
          {
            path: '/build?',
            method: 'POST',
            file: context,
            isStream: true,
            abortSignal: req.signal,
            ...(registryconfig ? { registryconfig } : {}),
            options: {
              dockerfile: req.dockerfile,
              labels: req.labels,
              ...(req.target ? { target: req.target } : {}),
              ...(req.platform ? { platform: req.platform } : {}),
              rm: true,
              forcerm: true,
              ...options,
            },
            statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' },
          } as never,
          (err: unknown, res: unknown) => (err ? reject(err) : resolve(res as Readable)),
        );
      });
    } catch (err) {
      context.destroy();
      // A Dockerfile the daemon cannot parse is rejected up front (HTTP 400) with its reason;
      // a daemon that is restarting is worth another try.
      throw new DeployerError('build_failed', dockerMessage(err), { cause: err, retryable: isTransient(err) && (err as { statusCode?: number }).statusCode !== 500 });
    }
  }

  async prune(repository: string, keep: number, protect: string[] = []): Promise<number> {
    const images = (await this.#docker.listImages({ filters: { reference: [repository] } })) as { Id: string; Created: number; RepoTags?: string[]; RepoDigests?: string[] }[];
    // Rollback targets (issue #15): matched by image id, tag, or the registry digest a push recorded.
    const digests = new Set(protect.map((p) => p.slice(p.indexOf('@') + 1)));
    const isProtected = (img: (typeof images)[number]) =>
      digests.has(img.Id) || (img.RepoTags ?? []).some((t) => protect.includes(t)) || (img.RepoDigests ?? []).some((d) => digests.has(d.slice(d.indexOf('@') + 1)));
    const old = images.sort((a, b) => b.Created - a.Created).slice(keep).filter((img) => !isProtected(img));
    let removed = 0;
    for (const img of old) {
      // By tag, never force: an image a container still uses stays.
      for (const tag of img.RepoTags ?? []) await this.#docker.getImage(tag).remove({ noprune: false }).catch(() => undefined);
      removed += (await this.#docker.getImage(img.Id).inspect().then(() => 0, () => 1));
    }
    return removed;
  }
}

/** The build's own failure (a RUN, a missing file) cannot be helped by trying again. */
const STEP_FAILED = /did not complete successfully|returned a non-zero code|executor failed running/;
const AUTH_FAILED = /\b401 Unauthorized\b|unauthorized|authentication required|no basic auth credentials|failed to authorize|denied: /i;
/** What a stage error (one line, 500 characters) keeps of the last output. */
const TAIL_IN_ERROR = 3;
const TAIL_LINE_IN_ERROR = 120;

/**
 * Classifies a failed build. The daemon's message comes first (with BuildKit, preceded
 * by the failing step, which its messages do not name), then the step's last output.
 */
function buildError(err: unknown, failure: StepFailure | undefined, mask: (l: string) => string, prefixStep = true): DeployerError {
  if (err instanceof DeployerError) return err;
  const code = (err as { code?: unknown }).code;
  const inBand = code === undefined && !(err as { statusCode?: number }).statusCode && (err as Error).name !== 'AbortError';
  const message = mask(errorMessage(err).trim());
  if (!inBand) return new DeployerError('build_failed', message, { cause: err, retryable: isTransient(err) });
  let text = message;
  if (failure) {
    const step = failure.step.length > 120 ? `${failure.step.slice(0, 119)}…` : failure.step;
    if (prefixStep && step) text = `${mask(step)}: ${text}`;
    const tail = failure.lastLines
      .filter((l) => l.trim() !== '')
      .slice(-TAIL_IN_ERROR)
      .map((l) => mask(l.length > TAIL_LINE_IN_ERROR ? `${l.slice(0, TAIL_LINE_IN_ERROR - 1)}…` : l));
    if (tail.length) text += ` — last output: ${tail.join(' ⏎ ')}`;
  }
  if (AUTH_FAILED.test(message) && !STEP_FAILED.test(message)) return new DeployerError('registry_auth', text, { cause: err });
  return new DeployerError('build_failed', text, { cause: err, retryable: !STEP_FAILED.test(message) && isTransient({ message }) });
}

export function splitRef(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/** The daemon's own message from a dockerode error (its JSON body), else the error text. */
export function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; statusCode?: number; message?: string };
  const msg = e?.json?.message ?? (typeof e?.message === 'string' ? e.message.replace(/^\(HTTP code \d+\) [^-]*- /, '') : undefined);
  return (msg ?? String(err)).trim();
}
