import Docker from 'dockerode';

/** dockerode for a `unix:///path` or `tcp://host:port` endpoint, as written in config. */
export function createDocker(host: string): Docker {
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  const url = new URL(host);
  if (url.protocol === 'tcp:' || url.protocol === 'http:') {
    return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: 'http' });
  }
  if (url.protocol === 'ssh:') {
    return new Docker({ protocol: 'ssh', host: url.hostname, port: Number(url.port || 22), username: url.username || 'root' });
  }
  throw new Error(`unsupported docker host "${host}" (use unix://, tcp:// or ssh://)`);
}

export type { Docker };
