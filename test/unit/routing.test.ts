import examples from '@octokit/webhooks-examples/api.github.com/index.json' with { type: 'json' };
import { describe, expect, it } from 'vitest';
import type { PipelineConfig } from '../../src/config/types.ts';
import { DEFAULT_DEPLOY } from '../../src/config/load.ts';
import { ignoreByRef, routeWebhook } from '../../src/pipeline/routing.ts';

const push = structuredClone((examples as { name: string; examples: Record<string, any>[] }[]).find((e) => e.name === 'push')!.examples.find((x) => x.ref.startsWith('refs/heads/') && !x.deleted)!);
const repo = push.repository.full_name as string;
const branch = (push.ref as string).replace('refs/heads/', '');

function pipeline(name: string, over: Partial<PipelineConfig> = {}): PipelineConfig {
  return {
    name, repo, url: 'file:///x', branch, image: 'r/x', registry: 'docker.io', tag: 'live', services: [], targets: [],
    build: { context: '.', dockerfile: 'Dockerfile', args: {}, target: undefined }, deploy: DEFAULT_DEPLOY,
    timeouts: { fetch: 1, build: 1, push: 1, deploy: 1 }, cancelSuperseded: false, pollMs: 0, retention: { runs: 1, ageMs: 1, logBytes: 1, images: 1 },
    environment: 'production', publicUrl: undefined, report: [], ...over,
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

describe('ignoreByRef: a push to a branch nobody deploys, answered from the ref alone', () => {
  const pipelines = [pipeline('a'), pipeline('b', { repo: 'other/repo', branch: 'release' })];
  const body = (payload: unknown) => Buffer.from(JSON.stringify(payload));

  it('reads the ref of a real GitHub push payload (its first key) and agrees with the full routing', () => {
    const toFeature = { ...push, ref: 'refs/heads/feature/ünïcode-docs', after: 'c'.repeat(40) };
    expect(Object.keys(push)[0]).toBe('ref');
    const quick = ignoreByRef('push', body(toFeature), pipelines);
    expect(quick).toEqual({ kind: 'ignore', reason: 'no pipeline for branch feature/ünïcode-docs' });
    expect(routeWebhook('push', toFeature, pipelines).kind).toBe('ignore');
    expect(ignoreByRef('push', body({ ...push, ref: 'refs/tags/v1.0' }), pipelines)).toEqual({ kind: 'ignore', reason: 'tag push refs/tags/v1.0' });
  });

  it('leaves every case it cannot be sure of to the full parse', () => {
    const cases: [string, Buffer][] = [
      ['a deployed branch', body({ ...push, ref: `refs/heads/${branch}` })],
      ['a branch deployed for another repository', body({ ...push, ref: 'refs/heads/release' })],
      ['an escaped character in the ref', body({ ...push, ref: 'refs/heads/a"b' })],
      ['whitespace before the first key', Buffer.from(` ${JSON.stringify(push)}`)],
      ['pretty-printed JSON', Buffer.from(JSON.stringify(push, null, 2))],
      ['another first key', body({ after: 'c'.repeat(40), ...push })],
      ['a ref that never ends', Buffer.from(`{"ref":"refs/heads/${'x'.repeat(2000)}`)],
      ['an empty body', Buffer.alloc(0)],
    ];
    for (const [what, b] of cases) expect(ignoreByRef('push', b, pipelines), what).toBeUndefined();
    expect(ignoreByRef('ping', body(push), pipelines)).toBeUndefined();
  });

  it('never ignores a push the full routing would deploy', () => {
    for (const ref of ['refs/heads/' + branch, 'refs/heads/release', 'refs/heads/x', 'refs/tags/t', 'refs/pull/1/head', 'refs/heads/' + branch + '/sub']) {
      const payload = { ...push, ref, after: 'd'.repeat(40), deleted: false };
      const quick = ignoreByRef('push', body(payload), pipelines);
      const full = routeWebhook('push', payload, pipelines);
      if (quick) expect(full.kind, ref).toBe('ignore');
      else expect([`refs/heads/${branch}`, 'refs/heads/release']).toContain(ref);
    }
  });
});

describe('webhook routing: a push without a head commit', () => {
  it('routes it with an empty subject and author', () => {
    const d = routeWebhook('push', { ...push, after: 'e'.repeat(40), head_commit: null }, [pipeline('a')]);
    expect(d.kind === 'push' ? [d.push.headSubject, d.push.headAuthor] : d.kind).toEqual(['', '']);
  });
});
