import type Docker from 'dockerode';
import type { DockerEndpoint } from '../config/types.ts';
import type { ServiceInspector } from '../pipeline/ports.ts';
import { createDocker } from './client.ts';

/** Reads services' current spec image, one client per endpoint. */
export class SwarmInspector implements ServiceInspector {
  readonly #clients = new Map<string, Docker>();
  readonly #sshAuthSock: string | undefined;
  constructor(opts: { sshAuthSock?: string | undefined } = {}) {
    this.#sshAuthSock = opts.sshAuthSock;
  }

  async currentImage(endpoint: DockerEndpoint, service: string): Promise<string | null> {
    let docker = this.#clients.get(endpoint.host);
    if (!docker) {
      docker = createDocker(endpoint, { sshAuthSock: this.#sshAuthSock });
      this.#clients.set(endpoint.host, docker);
    }
    try {
      const info = (await docker.getService(service).inspect()) as { Spec?: { Name?: string; TaskTemplate?: { ContainerSpec?: { Image?: string } } } };
      if (info.Spec?.Name !== service) return null;
      return info.Spec.TaskTemplate?.ContainerSpec?.Image ?? null;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw err;
    }
  }
}
