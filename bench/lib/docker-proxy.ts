// Parent side of docker-proxy-child.ts.
import { join } from 'node:path';
import type { DockerCall } from './docker-proxy-child.ts';
import { forkChild, type Child } from './proc.ts';

export type { DockerCall };

export interface DockerProxy {
  /** unix:///… to use as DOCKER_HOST / config docker.host. */
  host: string;
  calls(since?: number): Promise<DockerCall[]>;
  stop(): Promise<void>;
}

export async function startDockerProxy(dir: string, target = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'): Promise<DockerProxy> {
  if (!target.startsWith('unix://')) throw new Error(`the timing proxy needs a unix socket DOCKER_HOST, not ${target}`);
  const socket = join(dir, 'docker-proxy.sock');
  const child: Child = forkChild(join(import.meta.dirname, 'docker-proxy-child.ts'), {
    logFile: join(dir, 'docker-proxy.log'),
    args: [socket, target.slice('unix://'.length)],
  });
  // Not a request: the child says "ready" on its own once it listens.
  await child.request(undefined, 'ready', 10_000);
  return {
    host: `unix://${socket}`,
    async calls(since = 0) {
      const reply = await child.request<{ calls: DockerCall[] }>({ type: 'calls', since }, 'calls', 10_000);
      return reply.calls;
    },
    stop: () => child.stop(),
  };
}
