import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
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
    expect(await page.locator('main script').count()).toBe(1); // only our own

    await page.goto(`${daemon.url}/pipelines/site`);
    await page.getByRole('button', { name: 'Rebuild' }).click();
    await page.waitForURL(/\/runs\/r[a-z0-9]+$/);
    expect(dialogs).toEqual(['prompt']);
    const rebuildId = page.url().split('/').pop()!;
    expect(rebuildId).not.toBe(runId);
    const run = await (await fetch(`${daemon.url}/api/runs/${rebuildId}`)).json();
    expect(run).toMatchObject({ trigger: 'rebuild', status: 'queued' });
    expect(await page.content()).not.toContain(ADMIN_TOKEN);
    await page.close();
  });
});
