// Issue #11 item 11 (config part): a build context or Dockerfile path that leaves the
// repository is refused by `bin/deployer check-config` (and every config load), with
// the key path, and nothing starts.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../../bin/deployer');

function checkConfig(file: string): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(BIN, ['check-config', '--config', file], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' }, timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

/** A config with one pipeline per `build` value (check-config reports every error at once). */
const config = (builds: string[]) => `listen: 127.0.0.1:0
redis: redis://127.0.0.1:1
github: { webhookSecret: a-webhook-secret }
auth: { adminToken: an-admin-token-of-length }
docker: { host: "unix:///nonexistent.sock" }
pipelines:
${builds.map((build, i) => `  - name: p${i}
    repo: acme/www
    url: file:///nonexistent.git
    image: 127.0.0.1:5000/www${i}
    services: []
    build: ${build}
`).join('')}`;

describe('check-config refuses build paths that leave the repository', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hostile-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names each escaping context or Dockerfile by its key path, and exits 1', async () => {
    const cases: [string, string, RegExp][] = [
      ['{ context: .. }', 'build.context', /"\.\." leaves the repository/],
      ['{ context: ../other-repo }', 'build.context', /"\.\.\/other-repo" leaves the repository/],
      ['{ context: "app/../../.." }', 'build.context', /leaves the repository/],
      ['{ context: /etc }', 'build.context', /"\/etc" is an absolute path/],
      ['{ dockerfile: /etc/passwd }', 'build.dockerfile', /"\/etc\/passwd" is an absolute path/],
      ['{ dockerfile: ../Dockerfile }', 'build.dockerfile', /"\.\.\/Dockerfile" leaves the build context/],
      ['{ context: app, dockerfile: "docker/../../Dockerfile" }', 'build.dockerfile', /leaves the build context/],
      ['{ dockerfile: "Docker\\u0000file" }', 'build.dockerfile', /control character/],
    ];
    const file = join(dir, 'escaping.yaml');
    await writeFile(file, config(cases.map(([build]) => build)));
    const r = await checkConfig(file);
    expect(r.code, r.out).toBe(1);
    cases.forEach(([build, key, message], i) => {
      const line = r.out.split('\n').find((l) => l.includes(`pipelines[${i}].${key}:`));
      expect(line, `${build}\n${r.out}`).toBeDefined();
      expect(line, build).toMatch(message);
    });
  });

  it('accepts paths inside the repository, written any usual way', async () => {
    const file = join(dir, 'fine.yaml');
    await writeFile(file, config(['{ context: ., dockerfile: Dockerfile }', '{ context: ./app/, dockerfile: ./docker/Dockerfile.prod }', '{ context: "app/../web" }']));
    const r = await checkConfig(file);
    expect(r.code, r.out).toBe(0);
    expect(r.out).not.toMatch(/build\.(context|dockerfile):/);
  });
});
