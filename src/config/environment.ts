import type { HostEnvironment } from './types.ts';

type Env = Record<string, string | undefined>;

/**
 * The few variables of the deployer's own environment that its child processes and
 * connections need, read here once with the rest of the config (nothing else reads
 * `process.env`): git's PATH and HOME (for its own config, e.g. a CA file), and the ssh
 * agent for ssh:// Docker hosts, and the revision the image was built from.
 */
export function hostEnvironment(env: Env): HostEnvironment {
  return {
    path: env.PATH || '/usr/local/bin:/usr/bin:/bin',
    home: env.HOME || '/tmp',
    sshAuthSock: env.SSH_AUTH_SOCK || undefined,
    // Set by the image (Dockerfile: the commit it was built from); /healthz says it, so a
    // self-deploy (and an operator) can tell which version answers.
    revision: env.DEPLOYER_REVISION || undefined,
  };
}
