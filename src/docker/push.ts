import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import type { RegistryConfig } from '../config/types.ts';
import { DeployerError, errorMessage } from '../lib/errors.ts';
import type { PushPort } from '../pipeline/ports.ts';
import { authFor } from './auth.ts';
import { dockerMessage } from './build.ts';
import { followJsonStream } from './stream.ts';
import { isTransient } from './transient.ts';

/** Pushes one tag; the digest is taken from the push's own `aux` message, never a re-read tag. */
export class DockerPusher implements PushPort {
  readonly #docker: Docker;
  readonly #registries: RegistryConfig[];
  constructor(docker: Docker, registries: RegistryConfig[]) {
    this.#docker = docker;
    this.#registries = registries;
  }

  async push(req: { repository: string; registry: string; tag: string; signal: AbortSignal; log: (l: string) => void }): Promise<{ digest: string }> {
    const authconfig = authFor(this.#registries, req.registry);
    let response: Readable;
    try {
      response = (await this.#docker.getImage(req.repository).push({ tag: req.tag, authconfig, abortSignal: req.signal } as never)) as unknown as Readable;
    } catch (err) {
      throw new DeployerError('push_failed', dockerMessage(err), { retryable: isTransient(err), cause: err });
    }
    let digest = '';
    try {
      await followJsonStream(
        response,
        (e) => {
          // Per-layer progress bars are noise in a log; keep the state changes.
          if (e.status && !e.progressDetail?.current && e.status !== 'Pushing' && e.status !== 'Waiting' && e.status !== 'Preparing') {
            req.log(e.id ? `${e.id}: ${e.status}` : e.status);
          }
          const d = (e.aux as { Digest?: unknown } | undefined)?.Digest;
          if (typeof d === 'string') digest = d;
        },
        req.signal,
      );
    } catch (err) {
      const message = errorMessage(err).trim();
      // "no basic auth credentials": the registry wants auth and none is configured.
      const denied = /unauthorized|denied|authentication required|no basic auth credentials/i.test(message);
      const permanent = denied || /manifest invalid|name invalid|name unknown|unsupported|blob upload invalid/i.test(message);
      throw new DeployerError(denied ? 'registry_auth' : 'push_failed', message, { retryable: !permanent, cause: err });
    }
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
      throw new DeployerError('push_failed', `push of ${req.repository}:${req.tag} reported no digest`);
    }
    req.log(`pushed ${req.repository}:${req.tag} ${digest}`);
    return { digest };
  }
}
