// Issue #11 items 5 and 9, on a real `bin/deployer serve` (worker included) with real
// git, Docker, registry and Redis: what a repository and its build print cannot bloat
// the store or reach a reader's terminal as anything but text and colours.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { MAX_LOG_LINE, MAX_SUBJECT } from '../../src/lib/log-hygiene.ts';
import { readSse, type SseMessage } from '../../src/lib/sse.ts';
import { testConfig, testEnv } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { git, siteFiles } from '../support/site.ts';
import { authHeaders, get, MB, mb, rssOf, sampleRss } from './helpers.ts';

const REPO = 'acme/hostile-output';
const ESC = '\x1b';
/** Everything a build can print to take over a terminal, and colours that must survive. */
const NASTY = `A${ESC}]52;c;ZXZpbCBjb21tYW5k${'\x07'}B ${ESC}[31mred${ESC}[0m ${ESC}]0;pwned${'\x07'}${ESC}[2J${ESC}[H${ESC}[?1049hC${'\x08'}D`;

describe('hostile build output and commit messages (a real `bin/deployer serve`)', () => {
  let world: World;
  let config: Config;
  let daemon: DeployerProcess;
  let url: string;

  beforeAll(async () => {
    world = await createWorld({ name: 'ho' });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      registry: world.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: world.repo.url, image: world.image, services: [] }],
    });
    daemon = await spawnDeployer(['serve', '--config', config.file], testEnv(world.registry.password), 'listening');
  });

  afterAll(async () => {
    await daemon?.kill('SIGTERM');
    if (config) await disposeQueues(config);
    await world?.dispose();
  });

  const waitForEnd = async (runId: string) => {
    const deadline = Date.now() + 150_000;
    for (;;) {
      const run = await (await get(`${url}/api/runs/${runId}`)).json();
      if (['succeeded', 'failed', 'cancelled', 'superseded'].includes(run.status)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} did not finish: ${JSON.stringify(run).slice(0, 2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const sseLog = async (runId: string) => {
    const messages: SseMessage[] = [];
    for await (const m of readSse(`${url}/api/runs/${runId}/events?after=0`, { headers: authHeaders, signal: AbortSignal.timeout(30_000) })) {
      messages.push(m);
      if (m.event === 'end') break;
    }
    return messages.filter((m) => m.event === 'log').map((m) => (JSON.parse(m.data) as { text: string }).text).join('\n');
  };

  it('removes OSC, cursor and other control sequences from build output at ingest, keeps colours, and cuts over-long lines', async () => {
    const long = 'x'.repeat(30_000);
    // A nonce in each step: a cached step would print nothing.
    const nonce = crypto.randomUUID();
    const sha = await world.repo.commit(
      {
        Dockerfile: [
          'FROM scratch',
          'COPY busybox /bin/busybox',
          'RUN ["/bin/busybox","--install","-s","/bin"]',
          // printf turns \033, \007, \010 into the real bytes, in the build's own output.
          `RUN printf '${NASTY.replaceAll(ESC, '\\033').replaceAll('\x07', '\\007').replaceAll('\x08', '\\010')}\\n' # ${nonce}`,
          // Fails, and the daemon's error message repeats the 30,000-character command on one line.
          `RUN echo ${long} && exit 3 # ${nonce}`,
          '',
        ].join('\n'),
      },
      'noisy build',
    );
    const res = await deliver(url, pushPayload(REPO, 'main', sha, 'noisy build'));
    expect(res.status).toBe(202);
    const runId = res.body.runs[0] as string;
    const run = await waitForEnd(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/^build:/);

    const downloaded = await (await get(`${url}/api/runs/${runId}/log`)).text();
    const streamed = await sseLog(runId);
    for (const [where, log] of [['GET /log', downloaded], ['SSE', streamed]] as const) {
      // The printf ran: its plain text is there, as one line, with only the colour left.
      // BuildKit's plain progress prefixes the step's number ("#6 "); the classic builder prints the line bare.
      // oxlint-disable-next-line no-control-regex -- ESC is what is looked for
      expect(log.split('\n').filter((l) => /^(?:#\d+ (?:[\d.]+ )?)?AB \x1b\[31mred\x1b\[0m CD$/.test(l)), where).toHaveLength(1);
      expect(log, where).not.toContain(`${ESC}]`);
      expect(log, where).not.toContain(`${ESC}[2J`);
      expect(log, where).not.toContain(`${ESC}[?1049h`);
      expect(log, where).not.toContain('\x07');
      expect(log, where).not.toContain('\x08');
      // oxlint-disable-next-line no-control-regex -- ESC is what is looked for
      for (const m of log.matchAll(/\x1b/g)) expect(log.slice(m.index, m.index + 8), where).toMatch(/^\x1b\[[0-9;]*m/);
      // No stored line is longer than the cap (and its note); the long one says it was cut.
      const lines = log.split('\n');
      expect(Math.max(...lines.map((l) => l.length)), where).toBeLessThan(MAX_LOG_LINE + 200);
      expect(lines.some((l) => l.startsWith(long.slice(0, 100)) || l.includes(`echo ${long.slice(0, 100)}`)), where).toBe(true);
      expect(log, where).toMatch(/more characters of this line cut/);
    }
  });

  it('a commit whose first line is 48 MB: the stored subject is capped, every page and API answers 200, RSS stays sane', async () => {
    const pid = daemon.proc.pid!;
    const baseline = rssOf(pid);
    const rss = sampleRss(pid, 50);
    // git commit -F: the message is far beyond what argv can carry.
    const message = join(world.repo.workDir, '..', 'huge-message');
    await writeFile(message, `${'s'.repeat(48 * 1024 * 1024)}\n\nbody\n`);
    await world.repo.commit(siteFiles('huge subject\n'), 'site for the huge subject');
    await git(['commit', '--quiet', '--allow-empty', '--no-verify', '-F', message], world.repo.workDir);
    await git(['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], world.repo.workDir);
    const sha = (await git(['rev-parse', 'HEAD'], world.repo.workDir)).trim();
    // GitHub's payload carries the message too; 20 MB of it fits under the 25 MB cap.
    const payload = pushPayload(REPO, 'main', sha, `${'p'.repeat(20 * 1024 * 1024)}\n\nbody`);
    const res = await deliver(url, payload);
    expect(res.status).toBe(202);
    const runId = res.body.runs[0] as string;
    const run = await waitForEnd(runId);
    expect(run.status).toBe('succeeded');
    // The subject from git, capped, saying so.
    expect(run.subject).toBe(`${'s'.repeat(MAX_SUBJECT)} [… cut at ${MAX_SUBJECT} characters]`);

    const paths = [
      '/',
      '/pipelines/site',
      `/runs/${runId}`,
      '/api/pipelines',
      '/api/pipelines/site',
      '/api/pipelines/site/runs',
      '/api/pipelines/site/deployments',
      `/api/runs/${runId}`,
      `/api/runs/${runId}/log`,
      '/healthz',
    ];
    for (const path of paths) {
      const page = await get(`${url}${path}`);
      const body = await page.text();
      expect(page.status, path).toBe(200);
      expect(body.length, `${path} size`).toBeLessThan(MB);
    }
    const streamed = await sseLog(runId);
    expect(streamed).toContain(`"${'s'.repeat(MAX_SUBJECT)} [… cut at ${MAX_SUBJECT} characters]"`);
    expect(streamed.length).toBeLessThan(MB);
    rss.stop();
    console.log(`48 MB subject: RSS baseline ${mb(baseline)}, peak ${mb(rss.peak())} (+${mb(rss.peak() - baseline)})`);
    // Mostly the signed 20 MB payload while it is verified and parsed (~140 MB measured);
    // before the caps the 48 MB subject went through git, Redis, SQLite and every page.
    expect(rss.peak() - baseline, 'RSS growth while taking the 48 MB commit').toBeLessThan(200 * MB);
  });
});
