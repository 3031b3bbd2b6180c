import examples from '@octokit/webhooks-examples/api.github.com/index.json' with { type: 'json' };
import { describe, expect, it } from 'vitest';
import type { PipelineConfig } from '../../src/config/types.ts';
import { DEFAULT_DEPLOY } from '../../src/config/load.ts';
import { routeWebhook } from '../../src/pipeline/routing.ts';

const push = structuredClone((examples as { name: string; examples: Record<string, any>[] }[]).find((e) => e.name === 'push')!.examples.find((x) => x.ref.startsWith('refs/heads/') && !x.deleted)!);
const repo = push.repository.full_name as string;
const branch = (push.ref as string).replace('refs/heads/', '');

function pipeline(name: string, over: Partial<PipelineConfig> = {}): PipelineConfig {
  return {
    name, repo, url: 'file:///x', branch, image: 'r/x', registry: 'docker.io', tag: 'live', services: [], targets: [],
    build: { context: '.', dockerfile: 'Dockerfile', args: {}, target: undefined }, deploy: DEFAULT_DEPLOY,
    timeouts: { fetch: 1, build: 1, push: 1, deploy: 1 }, cancelSuperseded: false, pollMs: 0, retention: { runs: 1, ageMs: 1, logBytes: 1, images: 1 }, ...over,
  };
}

describe('webhook routing', () => {
  it('routes a push on the configured branch to every matching pipeline', () => {
    const d = routeWebhook('push', { ...push, after: 'a'.repeat(40), deleted: false }, [pipeline('a'), pipeline('b'), pipeline('c', { branch: 'other' })]);
    expect(d.kind).toBe('push');
    if (d.kind === 'push') {
      expect(d.pipelines.map((p) => p.name)).toEqual(['a', 'b']);
      expect(d.push.after).toBe('a'.repeat(40));
    }
  });

  it('matches repositories case-insensitively, as GitHub names are', () => {
    const d = routeWebhook('push', { ...push, after: 'b'.repeat(40) }, [pipeline('a', { repo: repo.toUpperCase() })]);
    expect(d.kind).toBe('push');
  });

  it('ignores other events, branches, repos, tags and deletions with a reason', () => {
    const ps = [pipeline('a')];
    const cases: [string, unknown, RegExp][] = [
      ['issues', {}, /event "issues"/],
      ['push', { ...push, ref: 'refs/heads/feature' }, /no pipeline for branch feature/],
      ['push', { ...push, repository: { full_name: 'other/repo' } }, /no pipeline for repository other\/repo/],
      ['push', { ...push, ref: 'refs/tags/v1.0' }, /tag push/],
      ...(examples as { name: string; examples: Record<string, any>[] }[]).find((e) => e.name === 'push')!.examples.filter((x) => x.ref.startsWith('refs/tags/')).map((x) => ['push', x, /tag push/] as [string, unknown, RegExp]),
      ['push', { ...push, deleted: true, after: '0'.repeat(40) }, /branch deletion/],
      ['push', { ...push, after: '0'.repeat(40) }, /branch deletion/],
      ['push', null, /lacks/],
      ['push', { ...push, after: 'not-a-sha' }, /not a commit sha/],
    ];
    for (const [event, payload, reason] of cases) {
      const d = routeWebhook(event, payload, ps);
      expect(d.kind, `${event} ${reason}`).toBe('ignore');
      if (d.kind === 'ignore') expect(d.reason).toMatch(reason);
    }
  });

  it('answers pings', () => {
    expect(routeWebhook('ping', {}, []).kind).toBe('ping');
  });
});
