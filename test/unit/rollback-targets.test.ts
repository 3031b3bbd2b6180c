import { describe, expect, it } from 'vitest';
import { manifestRefOf, protectedTargets } from '../../src/pipeline/rollback-targets.ts';
import { baseUrl, parseChallenge } from '../../src/registry/manifests.ts';

const D = (c: string) => `sha256:${c.repeat(64)}`;

describe('rollback targets', () => {
  it('protects the images of the last N distinct deployments, newest first', () => {
    const deps = [
      { id: 1, image: `r/x:live@${D('1')}`, digest: D('1'), deployedAt: '2026-01-01T00:00:00Z' },
      { id: 2, image: `r/x:live@${D('2')}`, digest: D('2'), deployedAt: '2026-01-02T00:00:00Z' },
      { id: 3, image: `r/x:live@${D('1')}`, digest: D('1'), deployedAt: '2026-01-03T00:00:00Z' }, // a rollback to 1
      { id: 4, image: `r/x:live@${D('4')}`, digest: D('4'), deployedAt: '2026-01-04T00:00:00Z' },
    ];
    expect(protectedTargets(deps, 2).map((d) => d.id)).toEqual([4, 3]);
    expect(protectedTargets(deps, 5).map((d) => d.id)).toEqual([4, 3, 2]);
  });

  it('splits pinned references into registry, repository and digest', () => {
    expect(manifestRefOf(`127.0.0.1:5000/team/site:live@${D('a')}`)).toEqual({ registry: '127.0.0.1:5000', repository: 'team/site', digest: D('a') });
    expect(manifestRefOf(`ghcr.io/ocaml/ocaml.org@${D('b')}`)).toEqual({ registry: 'ghcr.io', repository: 'ocaml/ocaml.org', digest: D('b') });
    expect(manifestRefOf(`nginx:1.27@${D('c')}`)).toEqual({ registry: 'docker.io', repository: 'library/nginx', digest: D('c') });
    expect(manifestRefOf(`localhost:5000/x@${D('d')}`)).toEqual({ registry: 'localhost:5000', repository: 'x', digest: D('d') });
    expect(manifestRefOf('r/x:live')).toBeUndefined();
  });

  it('parses the challenges real registries send', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push"')).toEqual({
      scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull,push' },
    });
    expect(parseChallenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:ocaml/ocaml.org:pull"')?.params.realm).toBe('https://ghcr.io/token');
    expect(parseChallenge('Basic realm="deployer-test"')).toEqual({ scheme: 'basic', params: { realm: 'deployer-test' } });
    expect(parseChallenge('Bearer realm=https://x/token, service=x')).toEqual({ scheme: 'bearer', params: { realm: 'https://x/token', service: 'x' } });
    expect(parseChallenge('Bearer realm="a\\"b"')?.params.realm).toBe('a"b');
    expect(parseChallenge('')).toBeUndefined();
  });

  it('knows where registries are', () => {
    expect(baseUrl('docker.io')).toBe('https://registry-1.docker.io');
    expect(baseUrl('127.0.0.1:5000')).toBe('http://127.0.0.1:5000');
    expect(baseUrl('localhost:5000')).toBe('http://localhost:5000');
    expect(baseUrl('ghcr.io')).toBe('https://ghcr.io');
  });
});
