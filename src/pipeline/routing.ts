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
  | { kind: 'push'; push: PushInfo; pipelines: PipelineConfig[] };

const ZERO_SHA = /^0{40}$/;

/**
 * Decides what a webhook delivery means, from its event name and parsed payload.
 * Pure: no I/O, so every case is unit-testable. Unknown shapes are ignored with a
 * reason rather than thrown, because GitHub sends many events we do not use.
 */
export function routeWebhook(event: string, payload: unknown, pipelines: PipelineConfig[]): RouteDecision {
  if (event === 'ping') return { kind: 'ping' };
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
