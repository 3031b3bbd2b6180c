import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config, PipelineConfig } from '../config/types.ts';
import { DeployerError, errorMessage } from '../lib/errors.ts';
import { cleanSubject, MAX_AUTHOR, MAX_SUBJECT } from '../lib/log-hygiene.ts';
import type { LineSink } from '../pipeline/events.ts';
import type { BranchHeadPort, Checkout, SourcePort } from '../pipeline/ports.ts';
import { createGit } from './factory.ts';

/**
 * Fetches commits into a bare mirror per repository (kept between runs, so each fetch
 * transfers only what is new) and checks each run's commit out into a fresh detached
 * worktree under dataDir/work, removed again by `cleanup()`.
 */
export class GitSource implements SourcePort, BranchHeadPort {
  readonly #root: string;
  readonly #config: Config;
  /** Serialises git operations per mirror: concurrent fetches into one repo race on its locks. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(config: Config) {
    this.#config = config;
    this.#root = join(config.dataDir, 'git');
  }

  async checkout(req: { pipeline: PipelineConfig; commit: string | null; signal: AbortSignal; log: LineSink }): Promise<Checkout> {
    const { pipeline, signal, log } = req;
    const mirror = this.#mirrorOf(pipeline);
    const token = pipeline.url.startsWith('https://') ? this.#config.github.token : undefined;
    return this.#locked(mirror, async () => {
      const environment = this.#config.environment;
      const git = async (baseDir: string) => createGit({ baseDir, signal, token, environment });
      try {
        // simple-git refuses a baseDir that does not exist, and --git-dir; so the mirror
        // folder is made first and every command runs inside it.
        await mkdir(mirror, { recursive: true });
        const mg = await git(mirror);
        await ensureMirror(mirror, pipeline.url, mg);
        const branchRef = `refs/remotes/origin/${pipeline.branch}`;
        log(`git fetch ${redactUrl(pipeline.url)} ${pipeline.branch}`);
        const started = Date.now();
        // Every git command here prints something: simple-git waits 50 ms after a silent one.
        await mg.raw(['fetch', '--verbose', '--no-tags', '--prune', 'origin', `+refs/heads/${pipeline.branch}:${branchRef}`]);
        const branchHead = (await mg.raw(['rev-parse', '--verify', `${branchRef}^{commit}`])).trim();
        let commit = req.commit;
        if (commit === null) {
          commit = branchHead;
          log(`branch ${pipeline.branch} is at ${commit}`);
        } else if (!(await hasCommit(mg, commit))) {
          // A push can be followed by a force-push before we fetch: ask for the commit itself.
          log(`commit ${commit} is no longer on ${pipeline.branch}; fetching it directly`);
          await mg.raw(['fetch', '--verbose', '--no-tags', 'origin', commit]).catch((err) => {
            throw new DeployerError('git_failed', `commit ${commit} cannot be fetched from ${redactUrl(pipeline.url)}: ${firstLine(err)}`);
          });
        }
        log(`fetched in ${Date.now() - started} ms`);
        const { subject, author } = await commitInfo(mg, commit);
        const workRoot = join(this.#config.dataDir, 'work');
        await mkdir(workRoot, { recursive: true });
        const dir = await mkdtemp(join(workRoot, `${pipeline.name}-`));
        await mg.raw(['worktree', 'add', '--detach', '--force', dir, commit]);
        const files = (await mg.raw(['ls-tree', '-r', '-z', '--name-only', commit])).split('\0').filter((f) => f.length > 0);
        log(`checked out ${commit.slice(0, 12)} "${subject}" (${files.length} files)`);
        const cleanup = async () => {
          await rm(dir, { recursive: true, force: true });
          // Prints the worktree it removes (never silent: see the fetch comment).
          await createGit({ baseDir: mirror, environment }).raw(['worktree', 'prune', '--verbose', '--expire', 'now']).catch(() => undefined);
        };
        return { commit, subject, author, dir, files, branchHead, cleanup };
      } catch (err) {
        if (err instanceof DeployerError) throw err;
        if (signal.aborted) throw err;
        const message = firstLine(err);
        // fetch.fsckObjects refused what the remote sent: no retry fetches other objects.
        if (/fsck error/i.test(errorMessage(err))) {
          throw new DeployerError('git_failed', `git: refused a malformed object from ${redactUrl(pipeline.url)} (fsck): ${message}`, { cause: err });
        }
        throw new DeployerError('git_failed', `git: ${message}`, { retryable: !PERMANENT_GIT.test(message), cause: err });
      }
    });
  }

  async isAncestor(req: { pipeline: PipelineConfig; ancestor: string; descendant: string; signal: AbortSignal }): Promise<boolean> {
    const { pipeline, ancestor, descendant, signal } = req;
    const mirror = this.#mirrorOf(pipeline);
    const token = pipeline.url.startsWith('https://') ? this.#config.github.token : undefined;
    return this.#locked(mirror, async () => {
      await mkdir(mirror, { recursive: true });
      const mg = createGit({ baseDir: mirror, signal, token, environment: this.#config.environment });
      try {
        const missing = async () => !(await hasCommit(mg, ancestor)) || !(await hasCommit(mg, descendant));
        if (await missing()) {
          // Another worker may have deployed a commit this mirror has not seen yet.
          await ensureMirror(mirror, pipeline.url, mg);
          await mg.raw(['fetch', '--verbose', '--no-tags', 'origin', `+refs/heads/${pipeline.branch}:refs/remotes/origin/${pipeline.branch}`]);
          if (await missing()) {
            const unknown = (await hasCommit(mg, ancestor)) ? descendant : ancestor;
            throw new DeployerError('commit_unknown', `commit ${unknown.slice(0, 12)} is not in ${redactUrl(pipeline.url)}`);
          }
        }
        // `merge-base --is-ancestor` answers by exit code alone, which simple-git does not
        // pass on (and a silent command costs it 50 ms): the same question asked so git
        // prints the answer — `ancestor` is an ancestor exactly when it is the merge base.
        const full = (await mg.raw(['rev-parse', '--verify', `${ancestor}^{commit}`])).trim();
        // Both commits exist, so a merge-base that fails means they share no history.
        const base = (await mg.raw(['merge-base', ancestor, descendant]).catch(() => '')).trim();
        return base === full;
      } catch (err) {
        if (err instanceof DeployerError || signal.aborted) throw err;
        throw new DeployerError('git_failed', `git: ${firstLine(err)}`, { retryable: true, cause: err });
      }
    });
  }

  #mirrorOf(pipeline: PipelineConfig): string {
    return join(this.#root, 'mirrors', `${pipeline.repo.replace(/[^A-Za-z0-9_.-]/g, '_')}.git`);
  }

  async branchHead(pipeline: PipelineConfig, signal?: AbortSignal): Promise<string> {
    const token = pipeline.url.startsWith('https://') ? this.#config.github.token : undefined;
    await mkdir(this.#root, { recursive: true });
    const out = await createGit({ baseDir: this.#root, signal, token, blockTimeoutMs: 30_000, environment: this.#config.environment })
      .raw(['ls-remote', '--heads', pipeline.url, `refs/heads/${pipeline.branch}`])
      .catch((err) => {
        throw new DeployerError('git_failed', `git ls-remote ${redactUrl(pipeline.url)}: ${firstLine(err)}`, { retryable: true, cause: err });
      });
    const sha = out.split('\n').map((l) => l.split('\t')).find(([, ref]) => ref === `refs/heads/${pipeline.branch}`)?.[0];
    if (!sha || !/^[0-9a-f]{40}$/.test(sha)) throw new DeployerError('git_failed', `branch ${pipeline.branch} not found in ${redactUrl(pipeline.url)}`);
    return sha;
  }

  async #locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(fn);
    this.#locks.set(key, next);
    try {
      return await next;
    } finally {
      if (this.#locks.get(key) === next) this.#locks.delete(key);
    }
  }
}

async function ensureMirror(mirror: string, url: string, git: ReturnType<typeof createGit>): Promise<void> {
  const exists = await stat(join(mirror, 'HEAD')).then(() => true, () => false);
  if (!exists) {
    await git.raw(['init', '--quiet', '--bare']);
    await git.raw(['remote', 'add', 'origin', url]);
    return;
  }
  // A fetch stopped between `init` and `remote add` (a run cancelled or superseded in its
  // first seconds) leaves a mirror without origin: every later fetch would fail on it.
  const current = await git.raw(['remote', 'get-url', 'origin']).then((u) => u.trim(), () => undefined);
  if (current === undefined) await git.raw(['remote', 'add', 'origin', url]);
  // The configured URL changed since the mirror was made.
  else if (current !== url) await git.raw(['remote', 'set-url', 'origin', url]);
}

/**
 * The commit's subject and author, capped by git itself: a subject can be megabytes
 * long, and only its start is ever shown. `%<(N,trunc)` pads to N columns or cuts to N
 * columns ending in "..": no padding left and a trailing ".." mean git cut it.
 */
async function commitInfo(git: ReturnType<typeof createGit>, commit: string): Promise<{ subject: string; author: string }> {
  const width = (n: number) => 2 * n;
  const out = await git.raw(['log', '-1', `--format=%<(${width(MAX_SUBJECT)},trunc)%s%x00%<(${width(MAX_AUTHOR)},trunc)%an`, commit]);
  const [subject = '', author = ''] = out.replace(/\n$/, '').split('\0');
  const clean = (field: string, max: number) => {
    const cut = field.endsWith('..'); // a padded field ends in spaces
    return cleanSubject(cut ? field.slice(0, -2) : field.trimEnd(), max, cut);
  };
  return { subject: clean(subject, MAX_SUBJECT), author: clean(author, MAX_AUTHOR) };
}

async function hasCommit(git: ReturnType<typeof createGit>, sha: string): Promise<boolean> {
  try {
    return (await git.raw(['cat-file', '-t', sha])).trim() === 'commit';
  } catch {
    return false;
  }
}

/** Git failures no retry can fix: the repository, branch or credentials are wrong. */
const PERMANENT_GIT = /not found|authentication failed|could not read username|permission denied|does not appear to be a git repository|couldn't find remote ref|invalid refspec/i;

/** Strips user:password@ from URLs before they reach a log. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

/** git's reason: its `fatal:`/`error:` line when there is one (verbose output comes first). */
function firstLine(err: unknown): string {
  const lines = errorMessage(err).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('hint:'));
  return lines.find((l) => /^(fatal|error):/.test(l)) ?? lines[0] ?? 'failed';
}
