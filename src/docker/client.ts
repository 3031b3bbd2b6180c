import { readFileSync } from 'node:fs';
import Docker from 'dockerode';
import type { DockerEndpoint } from '../config/types.ts';

/** dockerode for an endpoint as written in config: unix:///path, tcp://host:port (+TLS), ssh://user@host. */
export function createDocker(endpoint: DockerEndpoint | string, opts: { sshAuthSock?: string | undefined } = {}): Docker {
  const { host, tls } = typeof endpoint === 'string' ? { host: endpoint, tls: undefined } : endpoint;
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  const url = new URL(host);
  if (url.protocol === 'tcp:' || url.protocol === 'http:' || url.protocol === 'https:') {
    if (tls) {
      return new Docker({
        host: url.hostname, port: Number(url.port || 2376), protocol: 'https',
        ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key),
      });
    }
    return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: 'http' });
  }
  if (url.protocol === 'ssh:') {
    // docker-modem runs `docker system dial-stdio` on the remote host over ssh2; keys come from the ssh agent.
    return new Docker({ protocol: 'ssh', host: url.hostname, port: Number(url.port || 22), username: url.username || 'root', sshOptions: { agent: opts.sshAuthSock } } as Docker.DockerOptions);
  }
  throw new Error(`unsupported docker host "${host}" (use unix://, tcp:// or ssh://)`);
}

export type { Docker };
