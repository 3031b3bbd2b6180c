import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { DeployerError, errorMessage } from '../lib/errors.ts';
import { isTransient } from './transient.ts';
import type { BuildPort, BuildRequest } from '../pipeline/ports.ts';
import { packContext } from './context.ts';
import { followJsonStream, streamLines } from './stream.ts';

/** Builds with the classic builder through the Engine API, streaming output lines. */
export class DockerBuilder implements BuildPort {
  readonly #docker: Docker;
  constructor(docker: Docker) {
    this.#docker = docker;
  }

  async build(req: BuildRequest): Promise<{ imageId: string }> {
    const [primary, ...extra] = req.tags;
    if (!primary) throw new DeployerError('build_failed', 'no tag to build');
    const { stream: context, count } = await packContext(req.contextDir, req.files, req.dockerfile);
    req.log(`sending build context (${count} files)`);
    let response: Readable;
    try {
      response = (await this.#docker.buildImage(context, {
        t: primary,
        dockerfile: req.dockerfile,
        buildargs: req.args,
        labels: req.labels,
        ...(req.target ? { target: req.target } : {}),
        rm: true,
        forcerm: true,
        abortSignal: req.signal,
      } as Docker.ImageBuildOptions)) as unknown as Readable;
    } catch (err) {
      context.destroy();
      // A Dockerfile the daemon cannot parse is rejected up front (HTTP 400) with its reason;
      // a daemon that is restarting is worth another try.
      throw new DeployerError('build_failed', dockerMessage(err), { cause: err, retryable: isTransient(err) && (err as { statusCode?: number }).statusCode !== 500 });
    }
    let imageId = '';
    try {
      await followJsonStream(
        response,
        (e) => {
          // The classic builder sends bare "\n" messages between steps: not output.
          if (e.stream && e.stream !== '\n') for (const line of streamLines(e.stream)) req.log(line);
          else if (e.status) req.log(e.status);
          if (e.error) req.log(e.error.trimEnd());
          const id = e.aux?.ID;
          if (typeof id === 'string') imageId = id;
        },
        req.signal,
      );
    } catch (err) {
      // In-band errors are the build's own (a failing RUN): permanent. A broken stream is not.
      const inBand = !(err as { code?: string }).code;
      throw new DeployerError('build_failed', errorMessage(err).trim(), { cause: err, retryable: !inBand && isTransient(err) });
    }
    if (!imageId) imageId = ((await this.#docker.getImage(primary).inspect()) as { Id: string }).Id;
    for (const ref of extra) {
      const { repo, tag } = splitRef(ref);
      await this.#docker.getImage(imageId).tag({ repo, tag });
    }
    req.log(`built ${imageId.slice(0, 19)} as ${req.tags.join(', ')}`);
    return { imageId };
  }

  async prune(repository: string, keep: number): Promise<number> {
    const images = (await this.#docker.listImages({ filters: { reference: [repository] } })) as { Id: string; Created: number; RepoTags?: string[] }[];
    const old = images.sort((a, b) => b.Created - a.Created).slice(keep);
    let removed = 0;
    for (const img of old) {
      // By tag, never force: an image a container still uses stays.
      for (const tag of img.RepoTags ?? []) await this.#docker.getImage(tag).remove({ noprune: false }).catch(() => undefined);
      removed += (await this.#docker.getImage(img.Id).inspect().then(() => 0, () => 1));
    }
    return removed;
  }
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
