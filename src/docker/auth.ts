import type { RegistryConfig } from '../config/types.ts';

export interface AuthConfig {
  username?: string;
  password?: string;
  serveraddress: string;
}

/**
 * The X-Registry-Auth object for a registry. Docker wants one even for an open
 * registry, so an empty one (just the address) is sent when no credentials are set.
 */
export function authFor(registries: RegistryConfig[], registry: string): AuthConfig {
  const r = registries.find((x) => x.host === registry);
  if (!r || !r.username || !r.password) return { serveraddress: registry };
  return { username: r.username, password: r.password.reveal(), serveraddress: registry };
}

/** Docker Hub's registry answers as these hosts; credentials for it are configured as "docker.io". */
const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/']);

/** The configured credentials for a registry host, as BuildKit's session asks for them. */
export function credentialsFor(registries: RegistryConfig[], host: string): { username: string; secret: string } | undefined {
  const r = registries.find((x) => x.host === host || (DOCKER_HUB.has(host) && DOCKER_HUB.has(x.host)));
  if (!r || !r.username || !r.password) return undefined;
  return { username: r.username, secret: r.password.reveal() };
}

/**
 * The classic builder's X-Registry-Config: credentials for every configured registry,
 * so `FROM` images in them pull with auth (Docker Hub under the key the engine looks up).
 */
export function registryConfigHeader(registries: RegistryConfig[]): Record<string, AuthConfig> {
  const out: Record<string, AuthConfig> = {};
  for (const r of registries) {
    if (!r.username || !r.password) continue;
    const key = DOCKER_HUB.has(r.host) ? 'https://index.docker.io/v1/' : r.host;
    out[key] = { username: r.username, password: r.password.reveal(), serveraddress: key };
  }
  return out;
}
