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
