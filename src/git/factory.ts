import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { simpleGit, type SimpleGit } from 'simple-git';
import type { HostEnvironment } from '../config/types.ts';
import type { Secret } from '../lib/secret.ts';

/** Marks every process of one git instance (inherited by git's own helpers). */
const SESSION_VAR = 'DEPLOYER_GIT_SESSION';

/**
 * The only place that constructs simple-git. Every git process gets a fixed, quiet
 * environment (no prompts, no pager, C locale so messages are stable), is aborted with
 * the run, checks every object it fetches (fsck), and receives an access token only
 * through environment-provided config (GIT_CONFIG_COUNT), so it never reaches argv
 * (visible in `ps`) or any .git/config.
 */
export interface GitOptions {
  baseDir: string;
  /** PATH and HOME for git (from the config; nothing here reads the process environment). */
  environment: Pick<HostEnvironment, 'path' | 'home'>;
  signal?: AbortSignal;
  /** Sent as an HTTP Authorization header to https remotes. */
  token?: Secret | undefined;
  /** Kill a git process that prints nothing for this long. */
  blockTimeoutMs?: number;
}

export function createGit(opts: GitOptions): SimpleGit {
  const env: Record<string, string> = {
    PATH: opts.environment.path,
    HOME: opts.environment.home,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    GIT_TERMINAL_PROMPT: '0',
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
    GIT_AUTHOR_NAME: 'deployer',
    GIT_AUTHOR_EMAIL: 'deployer@localhost',
    GIT_COMMITTER_NAME: 'deployer',
    GIT_COMMITTER_EMAIL: 'deployer@localhost',
    [SESSION_VAR]: randomUUID(),
  };
  // Every object fetched is checked (malformed trees, `..` or `.git` entries, bad
  // headers): a repository is untrusted input, and the mirror outlives the run.
  const config: [string, string][] = [
    ['transfer.fsckObjects', 'true'],
    ['fetch.fsckObjects', 'true'],
  ];
  if (opts.token) {
    const basic = Buffer.from(`x-access-token:${opts.token.reveal()}`).toString('base64');
    config.push(['http.extraHeader', `Authorization: Basic ${basic}`]);
  }
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  const git = simpleGit({
    baseDir: opts.baseDir,
    maxConcurrentProcesses: 4,
    timeout: { block: opts.blockTimeoutMs ?? 120_000 },
    ...(opts.signal ? { abort: opts.signal } : {}),
    // simple-git refuses these variables unless allowed: they are set here, never from input.
    unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigEnvCount: true },
    // simple-git 4 drops or refuses every GIT_* variable not listed here.
    allowEnvironment: Object.keys(env).filter((k) => k.startsWith('GIT_')),
  });
  if (opts.signal) {
    // simple-git's abort sends SIGINT to `git` only; its transport helpers
    // (git-remote-http, ssh) would then hang on a stalled connection forever.
    const session = env[SESSION_VAR]!;
    const stop = () => {
      void terminateSession(session);
      setTimeout(() => void terminateSession(session), 250).unref();
    };
    opts.signal.addEventListener('abort', stop, { once: true });
  }
  return git.env(env);
}

/** SIGTERM (git cleans its lock files on it) to every process carrying the session mark. */
async function terminateSession(session: string): Promise<void> {
  const mark = `\0${SESSION_VAR}=${session}\0`;
  const pids = await readdir('/proc').catch(() => [] as string[]);
  await Promise.all(
    pids
      .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
      .map(async (p) => {
        const environ = await readFile(`/proc/${p}/environ`, 'latin1').catch(() => '');
        if (`\0${environ}`.includes(mark)) {
          try {
            process.kill(Number(p), 'SIGTERM');
          } catch {
            // already gone
          }
        }
      }),
  );
}
