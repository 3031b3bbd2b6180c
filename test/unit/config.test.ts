import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

const env = { GITHUB_WEBHOOK_SECRET: 'hook-secret-value', DEPLOYER_ADMIN_TOKEN: 'admin-token-0123456789', REGISTRY_PASSWORD: 'registry-pw' };

const issueExample = `
listen: 127.0.0.1:8090
publicUrl: http://127.0.0.1:8090
dataDir: ./data
redis: redis://127.0.0.1:6379
github:
  webhookSecret: \${GITHUB_WEBHOOK_SECRET}
auth:
  adminToken: \${DEPLOYER_ADMIN_TOKEN}
docker:
  host: unix:///var/run/docker.sock
registries:
  - host: 127.0.0.1:5000
    username: ci
    password: \${REGISTRY_PASSWORD}
pipelines:
  - name: www
    repo: ocaml/ocaml.org
    url: file:///srv/git/ocaml.org.git   # optional; default https://github.com/<repo>.git
    branch: main
    build: { context: ., dockerfile: Dockerfile, args: { VERSION: "1" } }
    image: 127.0.0.1:5000/ocaml-org       # pushed as :<commit sha> and :<tag>
    tag: live
    services: [infra_www]                 # swarm services updated to <image>@<digest>
`;

function issuesOf(text: string, e: Record<string, string | undefined> = env): { path: string; message: string }[] {
  try {
    parseConfig(text, '/etc/deployer/deployer.yaml', e);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  return [];
}

describe('config', () => {
  it('accepts the example from the issue and resolves defaults', () => {
    const c = parseConfig(issueExample, '/etc/deployer/deployer.yaml', env);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8090 });
    expect(c.dataDir).toBe('/etc/deployer/data');
    const p = c.pipelines[0]!;
    expect(p).toMatchObject({ name: 'www', repo: 'ocaml/ocaml.org', branch: 'main', image: '127.0.0.1:5000/ocaml-org', registry: '127.0.0.1:5000', tag: 'live', services: ['infra_www'] });
    expect(p.build).toEqual({
      context: '.', dockerfile: 'Dockerfile', args: { VERSION: '1' }, target: undefined,
      builder: 'buildkit', platform: undefined, secrets: {}, cacheFrom: ['127.0.0.1:5000/ocaml-org:live'],
    });
    expect(p.deploy).toEqual({ order: 'start-first', failureAction: 'rollback', monitorMs: 5000, timeoutMs: 300000 });
    expect(c.github.webhookSecret.reveal()).toBe('hook-secret-value');
    expect(c.registries[0]!.password!.reveal()).toBe('registry-pw');
  });

  it('never prints secrets, whatever way the config is turned into text', () => {
    const c = parseConfig(issueExample, '/x/deployer.yaml', env);
    const texts = [JSON.stringify(c), inspect(c, { depth: 10 }), `${c.github.webhookSecret}`];
    for (const t of texts) {
      for (const secret of Object.values(env)) expect(t).not.toContain(secret);
    }
  });

  it('defaults the clone URL to GitHub', () => {
    const c = parseConfig(issueExample.replace(/^\s+url:.*$/m, ''), '/x/d.yaml', env);
    expect(c.pipelines[0]!.url).toBe('https://github.com/ocaml/ocaml.org.git');
  });

  it('names the key path of an unknown key', () => {
    expect(issuesOf(issueExample.replace('tag: live', 'tag: live\n    colour: red'))).toContainEqual({ path: 'pipelines[0].colour', message: 'unknown key' });
    expect(issuesOf(`${issueExample}\nextra: 1\n`)).toContainEqual({ path: 'extra', message: 'unknown key' });
  });

  it('names the key of a missing secret variable', () => {
    const issues = issuesOf(issueExample, { ...env, REGISTRY_PASSWORD: undefined });
    expect(issues).toEqual([{ path: 'registries[0].password', message: 'environment variable REGISTRY_PASSWORD is not set' }]);
  });

  it('rejects duplicate pipeline names and malformed images, listing every error', () => {
    const dup = `${issueExample}  - name: www\n    repo: a/b\n    image: "Bad Image"\n    services: []\n`;
    const issues = issuesOf(dup);
    expect(issues).toContainEqual({ path: 'pipelines[1].name', message: 'duplicate pipeline name "www"' });
    expect(issues.some((i) => i.path === 'pipelines[1].image')).toBe(true);
  });

  it('rejects images with a tag or digest', () => {
    expect(issuesOf(issueExample.replace('127.0.0.1:5000/ocaml-org ', '127.0.0.1:5000/ocaml-org:v1 ')).map((i) => i.path)).toEqual(['pipelines[0].image']);
    expect(issuesOf(issueExample.replace('127.0.0.1:5000/ocaml-org ', '127.0.0.1:5000/ocaml-org@sha256:abc ')).map((i) => i.path)).toEqual(['pipelines[0].image']);
  });

  it('reads secrets from files (Docker secrets) and rejects giving both forms', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    writeFileSync(join(dir, 'hook'), 'from-file-secret\n');
    const text = issueExample.replace('webhookSecret: ${GITHUB_WEBHOOK_SECRET}', `webhookSecretFile: ${join(dir, 'hook')}`);
    expect(parseConfig(text, join(dir, 'd.yaml'), env).github.webhookSecret.reveal()).toBe('from-file-secret');
    const both = issueExample.replace('webhookSecret: ${GITHUB_WEBHOOK_SECRET}', `webhookSecret: x\n  webhookSecretFile: ${join(dir, 'hook')}`);
    expect(issuesOf(both).map((i) => i.path)).toEqual(['github.webhookSecret']);
    const missing = issueExample.replace('webhookSecret: ${GITHUB_WEBHOOK_SECRET}', 'webhookSecretFile: /nonexistent/secret');
    expect(issuesOf(missing)).toEqual([{ path: 'github.webhookSecretFile', message: 'cannot read "/nonexistent/secret": ENOENT' }]);
  });

  it('requires the webhook secret and a long enough admin token', () => {
    expect(issuesOf(issueExample.replace('webhookSecret: ${GITHUB_WEBHOOK_SECRET}', 'token: x')).map((i) => i.path)).toContain('github.webhookSecret');
    expect(issuesOf(issueExample, { ...env, DEPLOYER_ADMIN_TOKEN: 'short' })).toEqual([{ path: 'auth.adminToken', message: 'must be at least 16 characters' }]);
  });

  it('validates rollout settings and durations', () => {
    const text = issueExample.replace('tag: live', 'tag: live\n    deploy: { order: stop-first, monitor: 2s, timeout: 90s, failureAction: pause }');
    expect(parseConfig(text, '/x/d.yaml', env).pipelines[0]!.deploy).toEqual({ order: 'stop-first', monitorMs: 2000, timeoutMs: 90000, failureAction: 'pause' });
    expect(issuesOf(issueExample.replace('tag: live', 'tag: live\n    deploy: { monitor: soon }')).map((i) => i.path)).toEqual(['pipelines[0].deploy.monitor']);
    expect(issuesOf(issueExample.replace('tag: live', 'tag: live\n    deploy: { order: sideways }')).map((i) => i.path)).toContain('pipelines[0].deploy.order');
  });

  it('reports YAML syntax errors and non-mappings', () => {
    expect(issuesOf('pipelines: [')[0]!.message).toMatch(/^YAML:/);
    expect(issuesOf('- a\n- b\n')).toEqual([{ path: '', message: 'must be a YAML mapping' }]);
  });

  it('refuses one service in two pipelines, and checks docker endpoints', () => {
    const two = `${issueExample}  - name: www2\n    repo: a/b\n    image: x/y\n    services: [infra_www]\n`;
    expect(issuesOf(two)).toContainEqual({ path: 'pipelines[1].services[0]', message: 'service "infra_www" is already deployed by pipeline "www"' });
    const remote = issueExample.replace('services: [infra_www]', 'services: [infra_www, { name: edge_www, docker: { host: "tcp://10.0.0.2:2376", tls: { ca: ca.pem, cert: cert.pem, key: key.pem } } }]');
    const c = parseConfig(remote, '/etc/d/deployer.yaml', env);
    expect(c.pipelines[0]!.services).toEqual(['infra_www', 'edge_www']);
    expect(c.pipelines[0]!.targets[1]).toEqual({ service: 'edge_www', docker: { host: 'tcp://10.0.0.2:2376', tls: { ca: '/etc/d/ca.pem', cert: '/etc/d/cert.pem', key: '/etc/d/key.pem' } } });
    expect(c.pipelines[0]!.targets[0]!.docker.host).toBe('unix:///var/run/docker.sock');
    expect(issuesOf(issueExample.replace('host: unix:///var/run/docker.sock', 'host: http://x')).map((i) => i.path)).toEqual(['docker.host']);
  });

  it('docker.manager: services without an engine of their own are updated there; builds stay on docker.host', () => {
    const text = issueExample
      .replace('host: unix:///var/run/docker.sock', 'host: unix:///var/run/docker.sock\n  manager: { host: "tcp://10.0.0.1:2376", tls: { ca: ca.pem, cert: cert.pem, key: key.pem } }')
      .replace('services: [infra_www]', 'services: [infra_www, { name: edge_www, docker: { host: "tcp://10.0.0.2:2376" } }]');
    const c = parseConfig(text, '/etc/d/deployer.yaml', env);
    expect(c.docker).toEqual({ host: 'unix:///var/run/docker.sock', tls: undefined });
    expect(c.manager).toEqual({ host: 'tcp://10.0.0.1:2376', tls: { ca: '/etc/d/ca.pem', cert: '/etc/d/cert.pem', key: '/etc/d/key.pem' } });
    expect(c.pipelines[0]!.targets.map((t) => t.docker.host)).toEqual(['tcp://10.0.0.1:2376', 'tcp://10.0.0.2:2376']);
    expect(parseConfig(issueExample, '/x/d.yaml', env).manager).toEqual({ host: 'unix:///var/run/docker.sock', tls: undefined });
    expect(issuesOf(issueExample.replace('host: unix:///var/run/docker.sock', 'host: unix:///var/run/docker.sock\n  manager: { host: "http://x", colour: red }')).map((i) => i.path).sort()).toEqual(['docker.manager.colour', 'docker.manager.host']);
  });

  it('passes on PATH, HOME and the ssh agent from its own environment, with defaults', () => {
    expect(parseConfig(issueExample, '/x/d.yaml', { ...env, PATH: '/p', HOME: '/h', SSH_AUTH_SOCK: '/s', DEPLOYER_REVISION: 'abc' }).environment).toEqual({ path: '/p', home: '/h', sshAuthSock: '/s', revision: 'abc' });
    expect(parseConfig(issueExample, '/x/d.yaml', env).environment).toEqual({ path: '/usr/local/bin:/usr/bin:/bin', home: '/tmp', sshAuthSock: undefined, revision: undefined });
  });
});
