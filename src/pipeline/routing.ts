import type { PipelineConfig } from '../config/types.ts';

/** The parts of a GitHub push payload that decide what to do with it. */
export interface PushInfo {
  repo: string;
  ref: string;
  after: string;
  deleted: boolean;
  headSubject: string;
  headAuthor: string;
}

export type RouteDecision =
  | { kind: 'ignore'; reason: string }
  | { kind: 'ping' }
  | { kind: 'push'; push: PushInfo; pipelines: PipelineConfig[] }
  | RerunDecision;

/** "Re-run" on GitHub (check_run / check_suite `rerequested`): rebuild that commit. */
export interface RerunDecision {
  kind: 'rerun';
  repo: string;
  commit: string;
  pipelines: PipelineConfig[];
  source: 'check_run' | 'check_suite';
  /** The GitHub login that asked. */
  by: string;
}

/** The name of a pipeline's check run (and commit status context) on GitHub. */
export function checkName(pipeline: string): string {
  return `deployer/${pipeline}`;
}

const ZERO_SHA = /^0{40}$/;

/**
 * Decides what a webhook delivery means, from its event name and parsed payload.
 * Pure: no I/O, so every case is unit-testable. Unknown shapes are ignored with a
 * reason rather than thrown, because GitHub sends many events we do not use.
 */
export function routeWebhook(event: string, payload: unknown, pipelines: PipelineConfig[]): RouteDecision {
  if (event === 'ping') return { kind: 'ping' };
  if (event === 'check_run' || event === 'check_suite') return routeRerun(event, payload, pipelines);
  if (event !== 'push') return { kind: 'ignore', reason: `event "${event}" is not used` };
  const p = payload as Record<string, any> | null;
  const repo = p?.repository?.full_name;
  const ref = p?.ref;
  const after = p?.after;
  if (typeof repo !== 'string' || typeof ref !== 'string' || typeof after !== 'string') {
    return { kind: 'ignore', reason: 'push payload lacks repository.full_name, ref or after' };
  }
  if (ref.startsWith('refs/tags/')) return { kind: 'ignore', reason: `tag push ${ref}` };
  if (!ref.startsWith('refs/heads/')) return { kind: 'ignore', reason: `ref ${ref} is not a branch` };
  if (p?.deleted === true || ZERO_SHA.test(after)) return { kind: 'ignore', reason: `branch deletion ${ref}` };
  if (!/^[0-9a-f]{40}$/.test(after)) return { kind: 'ignore', reason: `"after" is not a commit sha` };
  const branch = ref.slice('refs/heads/'.length);
  const forRepo = pipelines.filter((pl) => pl.repo.toLowerCase() === repo.toLowerCase());
  if (forRepo.length === 0) return { kind: 'ignore', reason: `no pipeline for repository ${repo}` };
  const matching = forRepo.filter((pl) => pl.branch === branch);
  if (matching.length === 0) return { kind: 'ignore', reason: `no pipeline for branch ${branch} of ${repo}` };
  const head = p?.head_commit as Record<string, any> | null | undefined;
  return {
    kind: 'push',
    push: {
      repo,
      ref,
      after,
      deleted: false,
      headSubject: typeof head?.message === 'string' ? (head.message.split('\n')[0] ?? '') : '',
      headAuthor: typeof head?.author?.name === 'string' ? head.author.name : '',
    },
    pipelines: matching,
  };
}

/**
 * check_run.rerequested names one of our check runs (`deployer/<pipeline>`);
 * check_suite.rerequested re-runs every pipeline of the repository that deploys the
 * suite's branch. Other check actions (created, completed, …) are ignored.
 */
function routeRerun(event: 'check_run' | 'check_suite', payload: unknown, pipelines: PipelineConfig[]): RouteDecision {
  const p = payload as Record<string, any> | null;
  if (p?.action !== 'rerequested') return { kind: 'ignore', reason: `${event} action "${String(p?.action)}" is not used` };
  const repo = p?.repository?.full_name;
  const subject = event === 'check_run' ? p?.check_run : p?.check_suite;
  const commit = subject?.head_sha;
  if (typeof repo !== 'string' || typeof commit !== 'string' || !/^[0-9a-f]{40}$/.test(commit)) {
    return { kind: 'ignore', reason: `${event} payload lacks repository.full_name or a head_sha` };
  }
  const forRepo = pipelines.filter((pl) => pl.repo.toLowerCase() === repo.toLowerCase());
  let matching: PipelineConfig[];
  if (event === 'check_run') {
    matching = forRepo.filter((pl) => checkName(pl.name) === subject?.name);
    if (matching.length === 0) return { kind: 'ignore', reason: `check run "${String(subject?.name)}" is not one of ours` };
  } else {
    const branch = subject?.head_branch;
    matching = forRepo.filter((pl) => pl.branch === branch);
    if (matching.length === 0) return { kind: 'ignore', reason: `no pipeline for branch ${String(branch)} of ${repo}` };
  }
  const by = typeof p?.sender?.login === 'string' ? p.sender.login : 'unknown';
  return { kind: 'rerun', repo, commit, pipelines: matching, source: event, by };
}

const REF_PREFIX = Buffer.from('{"ref":"');
/** Refs longer than this are not looked for in the body's first bytes (git allows long ones; GitHub's are short). */
const REF_WINDOW = 1024;

/**
 * Answers "ignore" for a push to a ref that no pipeline deploys, from the raw body's
 * first bytes, without parsing the rest: most deliveries of a busy repository are
 * pushes to other branches, and parsing their (often large) payloads was most of what
 * answering them cost. It only answers when it is certain, else returns undefined and
 * the caller parses as usual:
 * - the body must begin exactly `{"ref":"…"` (GitHub's push payloads do; `ref` is then
 *   the top-level key, by JSON's grammar) and the ref must hold no escape;
 * - a branch counts as deployed if any pipeline has it, whatever the repository, so a
 *   push to a deployed branch always takes the full path.
 * The caller has verified the signature: the bytes are GitHub's.
 */
export function ignoreByRef(event: string, body: Buffer, pipelines: PipelineConfig[]): { kind: 'ignore'; reason: string } | undefined {
  if (event !== 'push' || body.length < REF_PREFIX.length + 2 || body.compare(REF_PREFIX, 0, REF_PREFIX.length, 0, REF_PREFIX.length) !== 0) return undefined;
  const end = body.indexOf(0x22 /* " */, REF_PREFIX.length);
  if (end < 0 || end - REF_PREFIX.length > REF_WINDOW) return undefined;
  const raw = body.subarray(REF_PREFIX.length, end);
  if (raw.includes(0x5c /* \ */)) return undefined;
  const ref = raw.toString('utf8');
  if (ref.startsWith('refs/tags/')) return { kind: 'ignore', reason: `tag push ${ref}` };
  if (!ref.startsWith('refs/heads/')) return { kind: 'ignore', reason: `ref ${ref} is not a branch` };
  const branch = ref.slice('refs/heads/'.length);
  if (pipelines.some((pl) => pl.branch === branch)) return undefined;
  return { kind: 'ignore', reason: `no pipeline for branch ${branch}` };
}
