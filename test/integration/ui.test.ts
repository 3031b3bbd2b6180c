import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { launchChromium } from '../helpers/browser.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { disposeQueues } from '../helpers/world.ts';

const XSS = '<img src=x onerror=alert(1)>';
const VIEWER = 'viewer-token-ui-0123456789';

/**
 * The pages in a real browser (Debian's chromium), without Docker: the worker's part is
 * played through the real event stream. What a viewer sees, hostile text rendered as
 * text, and a run followed live without a reload.
 */
describe('console pages in a real browser', () => {
  let config: Config;
  let daemon: Daemon;
  let browser: Browser;
  let redis: Redis;
  let reporter: StreamReporter;
  const at = () => new Date().toISOString();

  beforeAll(async () => {
    config = testConfig({
      pipelines: [{ name: 'site', repo: 'acme/ui', image: '127.0.0.1:5999/ui', services: ['infra_www'] }],
      authYaml: `  tokens: [{ name: watcher, role: viewer, token: ${VIEWER} }]\n`,
    });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    browser = await launchChromium();
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    reporter = new StreamReporter(redis, config.redisPrefix);
  });

  afterAll(async () => {
    redis?.disconnect();
    await browser?.close();
    await daemon?.close();
    await disposeQueues(config);
  });

  /** A new browser session signed in with `token` through the sign-in form; records dialogs. */
  async function session(token: string): Promise<{ page: Page; dialogs: string[]; close(): Promise<void> }> {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss();
    });
    await page.goto(`${daemon.url}/`);
    await page.locator('#token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${daemon.url}/`);
    return { page, dialogs, close: () => ctx.close() };
  }

  it('renders a hostile commit subject, author name and log line as text: no dialog, no element', async () => {
    const payload = pushPayload('acme/ui', 'main', 'c'.repeat(40), XSS);
    payload.head_commit.author = { ...payload.head_commit.author, name: XSS };
    const runId = (await deliver(daemon.url!, payload)).body.runs[0] as string;
    // A worker takes the run, then logs (a waiting run takes no log).
    reporter.emit({ type: 'run.started', runId, at: at(), worker: 'ui-test', attempt: 1 });
    reporter.emit({ type: 'log', runId, stage: 'build', at: at(), lines: [XSS, `#3 ${XSS}`, `#3 0.1 \u001b[31m${XSS}\u001b[0m`] });
    await reporter.flush();
    await waitFor(() => daemon.store!.lastLogSeq(runId) > 0);

    const { page, dialogs, close } = await session(ADMIN_TOKEN);
    for (const path of ['/', '/pipelines/site', `/runs/${runId}`, '/runs', '/audit']) {
      await page.goto(`${daemon.url}${path}`);
      expect(await page.locator('img').count(), path).toBe(0);
      if (path !== '/audit') expect(await page.locator('main').textContent(), path).toContain(XSS);
    }
    // On the run page the log line is there as text three times (plain, step title, coloured output).
    await page.goto(`${daemon.url}/runs/${runId}`);
    expect(await page.locator('#log').textContent()).toContain(`#3 0.1 ${XSS}`);
    expect(await page.locator('#log .ansi-red-fg').textContent()).toBe(XSS);

    // And when it arrives live, through the script.
    reporter.emit({ type: 'log', runId, stage: 'build', at: at(), lines: [`live ${XSS}`, `#4 ${XSS}`, `#4 0.2 \u001b[1m${XSS}\u001b[0m`] });
    await reporter.flush();
    await page.locator('#log .l', { hasText: `live ${XSS}` }).waitFor({ timeout: 10_000 });
    await page.locator('#log details[data-step="4"] .ansi-b', { hasText: XSS }).waitFor({ timeout: 10_000 });
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('#log details[data-step="4"] .step-title').textContent()).toBe(XSS);
    expect(dialogs).toEqual([]);
    reporter.emit({ type: 'run.finished', runId, status: 'failed', at: at(), error: XSS });
    await reporter.flush();
    await page.locator('#run-status .st-failed').waitFor({ timeout: 10_000 });
    expect(await page.locator('.notice.bad').textContent()).toContain(XSS);
    expect(await page.locator('img').count()).toBe(0);
    expect(dialogs).toEqual([]);
    await close();
  });

  it('shows a viewer no action buttons', async () => {
    const runId = (await deliver(daemon.url!, pushPayload('acme/ui', 'main', 'e'.repeat(40), 'viewer check'))).body.runs[0] as string;
    const { page, close } = await session(VIEWER);
    expect(await page.locator('header .who span').first().textContent()).toBe('watcher · viewer');
    for (const path of ['/', '/pipelines/site', `/runs/${runId}`]) {
      await page.goto(`${daemon.url}${path}`);
      expect(await page.locator('main form[method=post]').count(), path).toBe(0);
      expect(await page.locator('main button', { hasText: /Rebuild|Cancel|Roll back|Pause|Resume|Start|Check now/ }).count(), path).toBe(0);
    }
    // A viewer may read the log and the audit trail.
    expect((await page.goto(`${daemon.url}/api/runs/${runId}/log`))!.status()).toBe(200);
    expect((await page.goto(`${daemon.url}/audit`))!.status()).toBe(200);
    await close();
  });

  it('follows a running run live: log lines, stages and status change in place, and the overview too', async () => {
    const runId = (await deliver(daemon.url!, pushPayload('acme/ui', 'main', 'd'.repeat(40), 'live view'))).body.runs[0] as string;
    const { page, close } = await session(ADMIN_TOKEN);
    const overview = await page.context().newPage();
    await overview.goto(`${daemon.url}/`);
    await page.goto(`${daemon.url}/runs/${runId}`);
    expect(await page.locator('#run-status .st-queued').count()).toBe(1);
    // Markers that a reload would wipe: the pages must update in place.
    for (const p of [page, overview]) await p.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

    reporter.emit({ type: 'run.started', runId, at: at(), worker: 'ui-test', attempt: 1 });
    reporter.emit({ type: 'stage.started', runId, stage: 'fetch', at: at() });
    reporter.emit({ type: 'log', runId, stage: 'fetch', at: at(), lines: ['fetching <b>not markup</b>', 'line two'] });
    await reporter.flush();
    await page.locator('#log', { hasText: 'line two' }).waitFor({ timeout: 10_000 });
    await page.locator('#run-status .st-running').waitFor({ timeout: 10_000 });
    await page.locator('#stage-fetch .st-running').waitFor({ timeout: 10_000 });
    await overview.locator(`a[href="/runs/${runId}"] .st-running`).first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#log').textContent()).toContain('fetching <b>not markup</b>');
    expect(await page.locator('#log b').count()).toBe(0);
    // Line anchors continue the numbering.
    expect(await page.locator('#L2').textContent()).toContain('line two');

    reporter.emit({ type: 'stage.finished', runId, stage: 'fetch', status: 'failed', at: at(), error: 'no such commit' });
    reporter.emit({ type: 'run.finished', runId, status: 'failed', at: at(), error: 'fetch failed: no such commit' });
    await reporter.flush();
    await page.locator('#run-status .st-failed').waitFor({ timeout: 10_000 });
    await overview.locator(`tr:has(a[href="/runs/${runId}"]) .st-failed`).first().waitFor({ timeout: 10_000 });
    expect(await page.locator('main').textContent()).toContain('fetch failed: no such commit');
    for (const p of [page, overview]) expect(await p.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    await close();
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
