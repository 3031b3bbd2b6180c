import { Redis } from 'ioredis';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { ADMIN_TOKEN, testConfig, AUTH } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { disposeQueues } from '../helpers/world.ts';

/**
 * The minimal pages in a real browser (Debian's chromium): pipelines, a run page, and
 * the Rebuild button, which asks for the admin token and queues a rebuild.
 */
describe('minimal UI in a real browser', () => {
  let config: Config;
  let daemon: Daemon;
  let browser: Browser;

  beforeAll(async () => {
    config = testConfig({ pipelines: [{ name: 'site', repo: 'acme/ui', image: '127.0.0.1:5999/ui', services: ['infra_www'] }] });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.close();
    await disposeQueues(config);
  });

  it('shows pipelines and runs, and the Rebuild button asks for the token and queues a run', async () => {
    const res = await deliver(daemon.url!, pushPayload('acme/ui', 'main', 'c'.repeat(40), 'Fix <script>alert(1)</script> typo'));
    const runId = res.body.runs[0];
    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.type());
      void (d.type() === 'prompt' ? d.accept(ADMIN_TOKEN) : d.dismiss());
    });
    await page.goto(`${daemon.url}/`);
    expect(await page.locator('h1').textContent()).toBe('Pipelines');
    expect(await page.locator('a[href="/pipelines/site"]').count()).toBe(1);
    expect(await page.locator(`a[href="/runs/${runId}"] .s-queued`).count()).toBe(1);

    await page.goto(`${daemon.url}/runs/${runId}`);
    // Commit messages are data, never markup.
    expect(await page.locator('main').textContent()).toContain('Fix <script>alert(1)</script> typo');
    expect(await page.locator('main script').count()).toBe(2); // only our own: Rebuild and the live view

    await page.goto(`${daemon.url}/pipelines/site`);
    await page.getByRole('button', { name: 'Rebuild' }).click();
    await page.waitForURL(/\/runs\/r[a-z0-9]+$/);
    expect(dialogs).toEqual(['prompt']);
    const rebuildId = page.url().split('/').pop()!;
    expect(rebuildId).not.toBe(runId);
    const run = await (await fetch(`${daemon.url}/api/runs/${rebuildId}`, AUTH)).json();
    expect(run).toMatchObject({ trigger: 'rebuild', status: 'queued' });
    expect(await page.content()).not.toContain(ADMIN_TOKEN);
    await page.close();
  });

  it('follows a running run live: log lines and stage states arrive without a reload', async () => {
    const res = await deliver(daemon.url!, pushPayload('acme/ui', 'main', 'd'.repeat(40), 'live view'));
    const runId = res.body.runs[0] as string;
    const page = await browser.newPage();
    await page.goto(`${daemon.url}/runs/${runId}`);
    expect(await page.locator('#run-status .s-queued').count()).toBe(1);
    // A marker that a reload would wipe: the page must update in place.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

    // Play the worker's part through the real event stream (no Docker needed here).
    const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    const reporter = new StreamReporter(redis, config.redisPrefix);
    const at = () => new Date().toISOString();
    try {
      reporter.emit({ type: 'run.started', runId, at: at(), worker: 'ui-test', attempt: 1 });
      reporter.emit({ type: 'stage.started', runId, stage: 'fetch', at: at() });
      reporter.emit({ type: 'log', runId, stage: 'fetch', at: at(), lines: ['fetching <b>not markup</b>', 'line two'] });
      await reporter.flush();
      await page.locator('pre.log', { hasText: 'line two' }).waitFor({ timeout: 10_000 });
      await page.locator('#run-status .s-running').waitFor({ timeout: 10_000 });
      await page.locator('#stage-fetch .s-running').waitFor({ timeout: 10_000 });
      expect(await page.locator('pre.log').textContent()).toContain('fetching <b>not markup</b>\nline two\n');
      expect(await page.locator('pre.log b').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);

      reporter.emit({ type: 'stage.finished', runId, stage: 'fetch', status: 'failed', at: at(), error: 'no such commit' });
      reporter.emit({ type: 'run.finished', runId, status: 'failed', at: at(), error: 'fetch failed: no such commit' });
      await reporter.flush();
      // At the end the page reloads once, for the final server-rendered view.
      await page.waitForFunction(() => (window as unknown as { marker?: number }).marker === undefined, undefined, { timeout: 10_000 });
      await page.locator('#run-status .s-failed').waitFor({ timeout: 10_000 });
      expect(await page.locator('main').textContent()).toContain('fetch failed: no such commit');
      expect(await page.locator('pre.log').textContent()).toContain('line two');
    } finally {
      redis.disconnect();
      await page.close();
    }
  });
});
