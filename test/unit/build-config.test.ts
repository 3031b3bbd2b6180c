import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

const env = { HOOK: 'hook-secret-value', ADMIN: 'admin-token-0123456789', NPM_TOKEN: 'npm-token-from-env-0042' };

function configText(build: string): string {
  return `
github:
  webhookSecret: \${HOOK}
auth:
  adminToken: \${ADMIN}
pipelines:
  - name: www
    repo: ocaml/ocaml.org
    image: 127.0.0.1:5000/ocaml-org
    tag: live
    services: []
    build: ${build}
`;
}

function parse(build: string, dir = '/etc/deployer', e: Record<string, string | undefined> = env) {
  return parseConfig(configText(build), join(dir, 'deployer.yaml'), e);
}

function issuesOf(build: string, dir = '/etc/deployer', e: Record<string, string | undefined> = env): { path: string; message: string }[] {
  try {
    parse(build, dir, e);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  return [];
}

describe('build.* config keys', () => {
  it('defaults to BuildKit, the engine platform and cache from the pipeline\'s own <image>:<tag>', () => {
    const b = parse('{}').pipelines[0]!.build;
    expect(b).toEqual({ context: '.', dockerfile: 'Dockerfile', args: {}, target: undefined, builder: 'buildkit', platform: undefined, secrets: {}, cacheFrom: ['127.0.0.1:5000/ocaml-org:live'] });
  });

  it('takes builder, platform and cacheFrom as written', () => {
    const b = parse('{ builder: classic, platform: linux/arm64/v8, cacheFrom: [] }').pipelines[0]!.build;
    expect(b).toMatchObject({ builder: 'classic', platform: 'linux/arm64/v8', cacheFrom: [] });
  });

  it('refuses an unknown builder, a malformed platform and SOURCE_COMMIT in args (the deployer sets it)', () => {
    expect(issuesOf('{ builder: kaniko }').map((i) => i.path)).toContain('pipelines[0].build.builder');
    expect(issuesOf('{ platform: amd64 }')).toContainEqual({ path: 'pipelines[0].build.platform', message: '"amd64" is not a platform like linux/amd64 or linux/arm64/v8' });
    expect(issuesOf('{ args: { SOURCE_COMMIT: abc } }')).toContainEqual({ path: 'pipelines[0].build.args.SOURCE_COMMIT', message: 'SOURCE_COMMIT is set by the deployer (the full commit sha being built)' });
  });

  it('reads { file } secrets relative to the config file and { env } secrets from the environment, as Secrets', () => {
    const dir = mkdtempSync(join(tmpdir(), 'build-config-'));
    writeFileSync(join(dir, 'key.pem'), '-----BEGIN KEY-----\nabc123secretfile\n-----END KEY-----\n');
    const c = parse('{ secrets: { key: { file: key.pem }, npm_token: { env: NPM_TOKEN } } }', dir);
    const s = c.pipelines[0]!.build.secrets!;
    // Byte for byte: a key file keeps its final newline.
    expect(s.key!.reveal()).toBe('-----BEGIN KEY-----\nabc123secretfile\n-----END KEY-----\n');
    expect(s.npm_token!.reveal()).toBe('npm-token-from-env-0042');
    for (const text of [JSON.stringify(c), inspect(c, { depth: 12 })]) {
      expect(text).not.toContain('abc123secretfile');
      expect(text).not.toContain('npm-token-from-env-0042');
    }
  });

  it('names the key of a secret that cannot be had, and refuses secrets with the classic builder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'build-config-'));
    writeFileSync(join(dir, 'big'), 'x'.repeat(500 * 1024 + 1));
    expect(issuesOf('{ secrets: { a: { file: missing.txt } } }', dir)).toEqual([{ path: 'pipelines[0].build.secrets.a.file', message: 'cannot read "missing.txt": ENOENT' }]);
    expect(issuesOf('{ secrets: { a: { file: big } } }', dir)).toEqual([{ path: 'pipelines[0].build.secrets.a.file', message: '"big" is larger than BuildKit\'s secret limit (500 KiB)' }]);
    expect(issuesOf('{ secrets: { a: { file: . } } }', dir)).toEqual([{ path: 'pipelines[0].build.secrets.a.file', message: '"." is not a regular file' }]);
    expect(issuesOf('{ secrets: { a: { env: UNSET_VAR } } }')).toEqual([{ path: 'pipelines[0].build.secrets.a.env', message: 'environment variable UNSET_VAR is not set' }]);
    expect(issuesOf('{ secrets: { a: { env: NPM_TOKEN, file: x } } }')).toEqual([{ path: 'pipelines[0].build.secrets.a', message: 'give exactly one of { file: PATH } or { env: NAME }' }]);
    expect(issuesOf('{ secrets: { a: {} } }')).toEqual([{ path: 'pipelines[0].build.secrets.a', message: 'give exactly one of { file: PATH } or { env: NAME }' }]);
    expect(issuesOf('{ secrets: { "a b": { env: NPM_TOKEN } } }').map((i) => i.path)).toEqual(['pipelines[0].build.secrets.a b']);
    expect(issuesOf('{ secrets: { a: { path: x } } }')).toContainEqual({ path: 'pipelines[0].build.secrets.a.path', message: 'unknown key' });
    expect(issuesOf('{ builder: classic, secrets: { a: { env: NPM_TOKEN } } }')).toEqual([{ path: 'pipelines[0].build.secrets', message: 'build secrets need builder: buildkit (the classic builder has no secret mounts)' }]);
  });
});
