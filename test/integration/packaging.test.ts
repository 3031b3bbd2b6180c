import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

/**
 * What can be checked of the packaging here (no Docker Hub, so the images themselves
 * cannot be built): the compose and stack files load with Docker's own compose loader
 * (`docker stack config`), keep Redis safe for BullMQ, and the example config is valid.
 */
describe('packaging files', () => {
  const withSecrets = () => {
    const dir = mkdtempSync(join(tmpdir(), 'pkg-'));
    cpSync(join(root, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
    mkdirSync(join(dir, 'deploy', 'secrets'), { recursive: true });
    cpSync(join(root, 'deploy'), join(dir, 'deploy'), { recursive: true });
    for (const s of ['github_webhook_secret', 'deployer_admin_token', 'registry_password']) {
      writeFileSync(join(dir, 'deploy', 'secrets', s), 'x'.repeat(24));
    }
    return dir;
  };

  it('docker-compose.yml loads, mounts the Docker socket, and runs Redis with AOF and noeviction', async () => {
    const dir = withSecrets();
    try {
      const { stdout } = await run('docker', ['stack', 'config', '-c', 'docker-compose.yml'], { cwd: dir });
      const c = parse(stdout);
      expect(c.services.deployer.volumes.some((v: { target: string }) => v.target === '/var/run/docker.sock')).toBe(true);
      expect(c.services.redis.command.join(' ')).toMatch(/--appendonly yes.*--maxmemory-policy noeviction/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('deploy/stack.yml (scale-out) loads: one web replica, a worker on every node, managers take the deploys', async () => {
    const dir = withSecrets();
    try {
      const { stdout } = await run('docker', ['stack', 'config', '-c', 'stack.yml'], { cwd: join(dir, 'deploy') });
      const c = parse(stdout);
      expect(c.services.web.command).toContain('--no-worker');
      expect(c.services.web.deploy.replicas).toBe(1);
      // Builders on the worker nodes; on the managers, workers that also deploy.
      for (const [name, role] of [['worker', 'worker'], ['worker-manager', 'manager']] as const) {
        expect(c.services[name].command[0]).toBe('worker');
        expect(c.services[name].deploy.mode).toBe('global');
        expect(c.services[name].deploy.placement.constraints).toEqual([`node.role == ${role}`]);
        expect(c.services[name].volumes.some((v: { target: string }) => v.target === '/var/run/docker.sock')).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('deploy/deployer.yaml is a valid config once its secret files exist', () => {
    const dir = withSecrets();
    try {
      const text = readFileSync(join(root, 'deploy', 'deployer.yaml'), 'utf8').replaceAll('/run/secrets/', `${join(dir, 'deploy', 'secrets')}/`);
      const c = parseConfig(text, join(dir, 'deployer.yaml'), {});
      expect(c.pipelines.map((p) => [p.name, p.services])).toEqual([['www', ['infra_www']]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the Dockerfile is multi-stage, on Node 24, with production dependencies only', () => {
    const text = readFileSync(join(root, 'Dockerfile'), 'utf8');
    expect(text.match(/^FROM node:24-/gm)).toHaveLength(2);
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(text).toMatch(/COPY --from=deps/);
  });
});
