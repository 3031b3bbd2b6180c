import { readFileSync } from 'node:fs';

/** Where the CLI client talks to, and as whom: resolved once from flags and the environment. */
export interface ClientOptions {
  server: string;
  token: string;
  json: boolean;
}

export class ClientUsageError extends Error {}
export class ClientAuthError extends Error {}

/**
 * `--server URL` (else DEPLOYER_SERVER, else http://127.0.0.1:8090) and the token from
 * `--token-file FILE` (else DEPLOYER_TOKEN). A token is never taken from argv, where
 * any user of the machine could read it in the process list.
 */
export function resolveClientOptions(flags: { server?: string | undefined; 'token-file'?: string | undefined; json?: boolean | undefined }, env: Record<string, string | undefined>): ClientOptions {
  const server = (flags.server ?? env.DEPLOYER_SERVER ?? 'http://127.0.0.1:8090').replace(/\/+$/, '');
  try {
    const u = new URL(server);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new ClientUsageError(`--server must be an http:// or https:// URL, not "${server}"`);
  }
  let token: string | undefined;
  if (flags['token-file'] !== undefined) {
    try {
      token = readFileSync(flags['token-file'], 'utf8').trim();
    } catch (err) {
      throw new ClientUsageError(`cannot read --token-file ${flags['token-file']}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    if (!token) throw new ClientUsageError(`--token-file ${flags['token-file']} is empty`);
  } else {
    token = env.DEPLOYER_TOKEN?.trim();
  }
  if (!token) throw new ClientAuthError('no token: pass --token-file FILE or set DEPLOYER_TOKEN');
  return { server, token, json: flags.json ?? false };
}
