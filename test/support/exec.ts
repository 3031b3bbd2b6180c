// Shared CLI runner for the test helpers. Every call gets an explicit env so
// the host's own configuration (~/.docker, ~/.gitconfig, proxies...) never
// leaks into a test run.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to the child's stdin (e.g. `docker login --password-stdin`). */
  input?: string;
  timeoutMs?: number;
}

export async function run(cmd: string, args: string[], opts: RunOptions): Promise<string> {
  const promise = execFileAsync(cmd, args, {
    env: opts.env,
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 16 * 1024 * 1024,
    encoding: 'utf8',
  });
  // Always close stdin: a child waiting for input would otherwise hang until
  // the timeout. A fast child may already be gone: the resulting EPIPE would
  // be an uncaught exception, and the exit status tells the real story anyway.
  promise.child.stdin?.on('error', () => undefined);
  promise.child.stdin?.end(opts.input ?? '');
  try {
    const { stdout } = await promise;
    return stdout;
  } catch (err) {
    // The default message only says "Command failed"; the stderr is what explains it.
    const e = err as Error & { code?: number | string; stderr?: string; stdout?: string };
    const detail = [e.stderr, e.stdout].filter((s) => s && s.trim()).join('\n').trim();
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.code ?? 'signal'}): ${detail || e.message}`, {
      cause: err,
    });
  }
}

/** Only what a CLI needs to find binaries and the test Docker engine. */
export function baseEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };
  if (process.env.DOCKER_HOST) env.DOCKER_HOST = process.env.DOCKER_HOST;
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return { ...env, ...extra };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
