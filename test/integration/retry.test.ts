import { createServer, request, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { createSiteRepo, git, siteFiles, type SiteRepo } from '../support/site.ts';
import { uniqueName } from '../support/swarm.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'acme/retry';

/**
 * A real HTTP proxy in front of the registry that answers 503 to the first `failures`
 * manifest uploads. Not to the /v2/ ping: after a failed ping the daemon loses the
 * auth challenge and reports "unauthorized" instead; and not to layer uploads, which
 * the daemon retries by itself (see docs/docker-notes.md).
 */
async function flakyProxy(target: string, failures: number): Promise<{ server: Server; host: string; served503: () => number }> {
  let left = failures;
  let served = 0;
  const [thost, tport] = target.split(':');
  const server = createServer((req, res) => {
    if (left > 0 && req.method === 'PUT' && /\/manifests\//.test(req.url ?? '')) {
      left--;
      served++;
      res.writeHead(503, { 'content-type': 'text/plain' }).end('temporarily unavailable');
      return;
    }
    const up = request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers } /* keep Host: the registry builds upload URLs from it */, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { server, host: `127.0.0.1:${port}`, served503: () => served };
}

describe('transient failures are retried, permanent ones are not (real registry behind a flaky proxy)', () => {
  let registry: TestRegistry;
  let repo: SiteRepo;
  let flaky: Awaited<ReturnType<typeof flakyProxy>>;
  let wrongPw: Awaited<ReturnType<typeof flakyProxy>>;
  let config: Config;
  let daemon: Daemon;
  let url: string;

  beforeAll(async () => {
    registry = await startRegistry({ auth: true });
    repo = await createSiteRepo();
    flaky = await flakyProxy(registry.host, 2);
    wrongPw = await flakyProxy(registry.host, 0);
    const name = uniqueName('retry');
    config = testConfig({
      registry: { host: flaky.host, username: registry.username, password: registry.password },
      moreRegistries: [{ host: wrongPw.host, username: registry.username, password: 'not-the-password' }],
      pipelines: [
        { name: 'flaky', repo: REPO, url: repo.url, image: `${flaky.host}/${name}`, tag: 'live', services: [] },
        { name: 'denied', repo: REPO, url: repo.url, branch: 'denied', image: `${wrongPw.host}/${name}`, tag: 'live', services: [] },
      ],
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
    url = daemon.url!;
  });

  afterAll(async () => {
    await daemon?.close();
    await disposeQueues(config);
    flaky?.server.close();
    wrongPw?.server.close();
    await registry?.stop();
    await repo?.cleanup();
  });

  it('retries a push the registry answered with 503, logs the retries, and succeeds', async () => {
    const sha = await repo.commit(siteFiles('retry me\n'), 'retry');
    const run = await waitForRun(url, (await deliver(url, pushPayload(REPO, 'main', sha))).body.runs[0]);
    if (run.status !== 'succeeded') console.log(await runLog(url, run.id)); // the why, on failure
    expect(flaky.served503()).toBe(2);
    expect(run.status).toBe('succeeded');
    const log = await runLog(url, run.id);
    expect(log).toMatch(/retry 1\/3 in 1 s after a transient error: .*503/);
    expect(log).toMatch(/retry 2\/3 in 3 s after a transient error/);
  });

  it('fails an authentication error at once, with the registry\'s message and no retry', async () => {
    const sha = await repo.commit(siteFiles('denied\n'), 'denied');
    await git(['push', '--quiet', '--force', 'origin', 'HEAD:refs/heads/denied'], repo.workDir);
    const run = await waitForRun(url, (await deliver(url, pushPayload(REPO, 'denied', sha))).body.runs[0]);
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/^push: .*(unauthorized|authentication required|denied)/i);
    const log = await runLog(url, run.id);
    expect(log).not.toMatch(/retry \d\/\d/); // none of ours (the daemon's own "Retrying in" may appear)
    expect(log).not.toContain('not-the-password');
  });
});
