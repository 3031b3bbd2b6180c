import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

/**
 * The packaging files as Docker's own loaders read them (fast; selfhost.test.ts builds the
 * image and runs both files for real): what they must keep whatever else changes.
 */
describe('packaging files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pkg-'));
  cpSync(join(root, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
  cpSync(join(root, 'deploy'), join(dir, 'deploy'), { recursive: true });
  mkdirSync(join(dir, 'deploy', 'secrets'), { recursive: true });
  for (const s of ['github_webhook_secret', 'deployer_admin_token', 'registry_password']) writeFileSync(join(dir, 'deploy', 'secrets', s), 'x'.repeat(24));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const env = (extra: Record<string, string> = {}) => ({ PATH: process.env.PATH, DOCKER_HOST: process.env.DOCKER_HOST, ...extra });
  const stackConfig = async (file: string, cwd: string, extra?: Record<string, string>) =>
    parse((await run('docker', ['stack', 'config', '-c', file], { cwd, env: env(extra) })).stdout);

  it('both files refuse to load without the Docker socket group id, and say what to set', async () => {
    await expect(stackConfig('stack.yml', join(dir, 'deploy'))).rejects.toThrow(/DOCKER_GID/);
    await expect(run('docker', ['compose', 'config', '-q'], { cwd: dir, env: env() })).rejects.toThrow(/DOCKER_GID/);
  });

  it('docker-compose.yml: non-root with the socket group, read-only, Redis with AOF and noeviction', async () => {
    const { stdout } = await run('docker', ['compose', 'config', '--format', 'json'], { cwd: dir, env: env({ DOCKER_GID: '4242' }) });
    const c = JSON.parse(stdout);
    const d = c.services.deployer;
    expect(d.group_add).toEqual(['4242']);
    expect(d.read_only).toBe(true);
    expect(d.volumes.map((v: { target: string }) => v.target)).toEqual(expect.arrayContaining(['/var/run/docker.sock', '/var/lib/deployer']));
    expect(c.services.redis.image).toBe('redis:7-alpine');
    expect(c.services.redis.command.join(' ')).toMatch(/--appendonly yes.*--maxmemory-policy noeviction/);
  });

  it('deploy/stack.yml: dnsrr everywhere (no IPVS needed), no published port, workers without a health check', async () => {
    const c = await stackConfig('stack.yml', join(dir, 'deploy'), { DOCKER_GID: '4242', REDIS_IMAGE: 'example/redis:7' });
    expect(c.services.web.command).toContain('--no-worker');
    expect(c.services.web.user).toBe('10001:4242');
    expect(c.services.web.read_only).toBe(true);
    expect(c.services.web.ports).toBeUndefined();
    expect(c.services.web.deploy.replicas).toBe(1);
    // Builders on the worker nodes; on the managers, workers that also deploy (scale-out).
    for (const [name, role] of [['worker', 'worker'], ['worker-manager', 'manager']] as const) {
      expect(c.services[name].command[0]).toBe('worker');
      expect(c.services[name].deploy.mode).toBe('global');
      expect(c.services[name].deploy.placement.constraints).toEqual([`node.role == ${role}`]);
      expect(c.services[name].volumes.some((v: { target: string }) => v.target === '/var/run/docker.sock')).toBe(true);
      expect(c.services[name].user).toBe('10001:4242');
      expect(c.services[name].read_only).toBe(true);
      expect(c.services[name].healthcheck.disable).toBe(true);
    }
    for (const s of ['web', 'worker', 'worker-manager', 'redis']) expect(c.services[s].deploy.endpoint_mode).toBe('dnsrr');
    expect(c.services.redis.image).toBe('example/redis:7');
    expect(c.services.redis.command.join(' ')).toMatch(/--appendonly yes.*--maxmemory-policy noeviction/);
  });

  it('deploy/deployer.yaml is a valid config once its secret files exist', () => {
    const text = readFileSync(join(root, 'deploy', 'deployer.yaml'), 'utf8').replaceAll('/run/secrets/', `${join(dir, 'deploy', 'secrets')}/`);
    const c = parseConfig(text, join(dir, 'deployer.yaml'), {});
    expect(c.pipelines.map((p) => [p.name, p.services])).toEqual([['www', ['infra_www']]]);
    expect(c.redisUrl).toBe('redis://redis:6379');
  });
});
