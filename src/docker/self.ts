import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Docker } from './client.ts';
import type { SelfIdentity, SelfPort } from '../pipeline/ports.ts';

/**
 * The swarm task this process runs as, asked of the engine it builds with (its own
 * node's): found by its container id, read from /proc/self/mountinfo (the engine mounts
 * `/var/lib/docker/containers/<id>/hostname` into every container), or by the hostname
 * (a container's default hostname is its short id). Outside a container, or in one
 * that is no swarm task, there is no identity.
 */
export class DockerSelf implements SelfPort {
  readonly #docker: Docker;
  readonly #mountinfo: string;
  #found: Promise<SelfIdentity | undefined> | undefined;

  constructor(docker: Docker, opts: { mountinfo?: string } = {}) {
    this.#docker = docker;
    this.#mountinfo = opts.mountinfo ?? '/proc/self/mountinfo';
  }

  identity(): Promise<SelfIdentity | undefined> {
    // Asked once; a failed look (engine away) is asked again next time.
    this.#found ??= this.#look().catch((err: unknown) => {
      this.#found = undefined;
      throw err;
    });
    return this.#found;
  }

  async #look(): Promise<SelfIdentity | undefined> {
    const mounts = await readFile(this.#mountinfo, 'utf8').catch(() => '');
    const id = /\/containers\/([0-9a-f]{64})\/hostname /.exec(mounts)?.[1] ?? hostname();
    let info: Awaited<ReturnType<ReturnType<Docker['getContainer']>['inspect']>>;
    try {
      info = await this.#docker.getContainer(id).inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
    const labels = info.Config.Labels ?? {};
    const service = labels['com.docker.swarm.service.name'];
    const task = labels['com.docker.swarm.task.id'];
    if (!service || !task) return undefined;
    return { service, task, container: info.Id, image: info.Config.Image };
  }
}
