import { randomBytes } from 'node:crypto';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { launchChromium } from '../helpers/browser.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { freePort } from '../helpers/process.ts';
import { pushCommit, createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { waitForRun } from '../helpers/runs.ts';
import { startOidcProvider, type TestOidc } from '../support/oidc.ts';
import { siteFiles } from '../support/site.ts';
import { waitForContent } from '../support/swarm.ts';

const REPO = 'acme/console';

/**
 * The site, with a build step that prints a coloured line after a pause (so it arrives
 * while the page is open). The step is unique to this test run: the engine's build cache
 * is shared, and a cached step prints nothing.
 */
function colouredSite(content: string, sleep: number): Record<string, string> {
  const files = siteFiles(content) as Record<string, string>;
  const nonce = randomBytes(6).toString('hex');
  files.Dockerfile = files.Dockerfile!.replace('COPY www /www', `RUN echo ${nonce} >/dev/null && sleep ${sleep} && printf '\\033[31mred build line\\033[0m\\n'\nCOPY www /www`);
  return files;
}

/**
 * The console as an on-call team uses it, in chromium, against the real engine (git,
 * Docker build, registry, swarm) and a real OpenID provider: an operator signs in and
 * rebuilds, watches it live, cancels a slow build; an admin rolls back from the
 * history, pauses and resumes; the audit trail names each of them.
 */
describe('console end to end (OIDC sign-in, real builds and deploys, chromium)', () => {
  let world: World;
  let service: string;
  let config: Config;
  let daemon: Daemon;
  let oidc: TestOidc;
  let browser: Browser;
  let url: string;
  let shaA: string;
  let shaB: string;

  beforeAll(async () => {
    world = await createWorld({ name: 'console', services: ['console-www'] });
    service = world.services[0]!;
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    oidc = await startOidcProvider(`${url}/auth/oidc/callback`);
    config = testConfig({
      registry: world.registryConfig,
      pipelines: [{ name: 'site', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [service], deploy: { monitor: '500ms', timeout: '60s' } }],
      listen: `127.0.0.1:${port}`,
      publicUrl: url,
      authYaml: `  oidc: { issuer: "${oidc.issuer}", clientId: ${oidc.clientId}, clientSecret: ${oidc.clientSecret} }
  users: { "bob@example.org": operator, "alice@example.org": admin }
`,
    });
    daemon = await startDaemon(config, { http: true, worker: true });
    browser = await launchChromium();
    // Something deployed to roll back to later.
    const a = await pushCommit(url, world, REPO, siteFiles('version A\n'), 'version A');
    shaA = a.sha;
    expect((await waitForRun(url, a.runId, 180_000)).status).toBe('succeeded');
    await waitForContent(service, 'version A\n', 30_000);
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.close();
    await oidc?.stop();
    if (config) await disposeQueues(config);
    await world?.dispose();
  });

  async function signIn(login: string): Promise<{ ctx: BrowserContext; page: Page }> {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${url}/signin`);
    await page.getByRole('link', { name: /Sign in with 127\.0\.0\.1/ }).click();
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill('x');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${url}/`);
    return { ctx, page };
  }
  const mark = (page: Page) => page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
  const marked = (page: Page) => page.evaluate(() => (window as unknown as { marker?: number }).marker === 42);

  it('an operator rebuilds: the run appears on / live, its log streams in with colours, and / shows the new commit serving', async () => {
    shaB = await world.repo.commit(colouredSite('version B\n', 2), 'version B');
    const { ctx, page: overview } = await signIn('bob');
    expect(await overview.locator('header .who span').first().textContent()).toBe('bob@example.org · operator');
    await mark(overview);

    const runPage = await ctx.newPage();
    await runPage.goto(`${url}/pipelines/site`);
    await runPage.getByRole('button', { name: 'Rebuild' }).click();
    await runPage.waitForURL(/\/runs\/r[a-z0-9]+$/);
    const runId = runPage.url().split('/').pop()!;
    await mark(runPage);

    // The overview learns of the run without a reload.
    await overview.locator(`a[href="/runs/${runId}"]`).first().waitFor({ timeout: 20_000 });
    // The log arrives live, coloured (ANSI → classes), on the page that was already open.
    const explain = async (err: unknown) => {
      const run = daemon.store!.getRun(runId);
      throw new Error(`${(err as Error).message}\nrun: ${JSON.stringify(run)}\nlog:\n${[...daemon.store!.logChunks(runId)].join('').slice(-3000)}\npage log:\n${(await runPage.locator('#log').innerHTML()).slice(-3000)}`);
    };
    await runPage.locator('#log .ansi-red-fg', { hasText: 'red build line' }).waitFor({ timeout: 150_000 }).catch(explain);
    await runPage.locator('#run-status .st-succeeded').waitFor({ timeout: 150_000 }).catch(explain);
    expect(await marked(runPage)).toBe(true);
    expect(await runPage.locator('#stage-deploy .st-succeeded').count()).toBe(1);
    expect(await runPage.locator('main').textContent()).toContain('rebuild by bob@example.org');
    await waitForContent(service, 'version B\n', 30_000);
    // The overview, never reloaded, now says B serves.
    await overview.locator('.card', { hasText: `${shaB.slice(0, 7)} version B` }).waitFor({ timeout: 20_000 });
    expect(await marked(overview)).toBe(true);
    expect(daemon.store!.getRun(runId)).toMatchObject({ status: 'succeeded', trigger: 'rebuild', requestedBy: 'bob@example.org', commit: shaB });
    await ctx.close();
  });

  it('an operator cancels a slow build from its page', async () => {
    await world.repo.commit(colouredSite('version C\n', 120), 'version C, slow');
    const { ctx, page } = await signIn('bob');
    await page.goto(`${url}/pipelines/site`);
    await page.getByRole('button', { name: 'Rebuild' }).click();
    await page.waitForURL(/\/runs\/r[a-z0-9]+$/);
    const runId = page.url().split('/').pop()!;
    await page.locator('#stage-build .st-running').waitFor({ timeout: 60_000 });
    await page.getByRole('button', { name: 'Cancel this run' }).click();
    await page.waitForURL(`${url}/runs/${runId}?done=cancelling`);
    await page.locator('#run-status .st-cancelled').waitFor({ timeout: 60_000 });
    expect(daemon.store!.getRun(runId)).toMatchObject({ status: 'cancelled' });
    expect(await page.getByRole('button', { name: 'Cancel this run' }).count()).toBe(0);
    await waitForContent(service, 'version B\n', 10_000);
    await ctx.close();
  });

  it('an admin rolls back from the deployment history, pauses and resumes; the audit trail names everyone', async () => {
    const { ctx, page } = await signIn('alice');
    await page.goto(`${url}/pipelines/site`);
    const entryA = page.locator('#history ~ .tw tr', { hasText: 'version A' });
    await entryA.getByText('Roll back…').click();
    await entryA.getByRole('button', { name: `Roll back to ${shaA.slice(0, 7)}` }).click();
    await page.waitForURL(/\/runs\/r[a-z0-9]+$/);
    const runId = page.url().split('/').pop()!;
    await page.locator('#run-status .st-succeeded').waitFor({ timeout: 120_000 });
    await waitForContent(service, 'version A\n', 30_000);
    expect(daemon.store!.getRun(runId)).toMatchObject({ trigger: 'rollback', requestedBy: 'alice@example.org', commit: shaA });

    // A rollback pauses the pipeline; resume it, then pause it again with a reason, and resume.
    await page.goto(`${url}/pipelines/site`);
    expect(await page.locator('h1 .badge-paused').count()).toBe(1);
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL(`${url}/pipelines/site?done=resumed`);
    expect(await page.locator('h1 .badge-paused').count()).toBe(0);
    await page.getByText('Pause…').click();
    await page.getByLabel('Reason').fill('release freeze');
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await page.waitForURL(`${url}/pipelines/site?done=paused`);
    expect(await page.locator('.notice.warn').textContent()).toContain('release freeze');
    expect(daemon.store!.pauseOf('site')).toMatchObject({ reason: 'release freeze', by: 'alice@example.org' });
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL(`${url}/pipelines/site?done=resumed`);
    expect(daemon.store!.pauseOf('site')).toBeUndefined();

    await page.goto(`${url}/audit`);
    const rows = await page.locator('tbody tr').allTextContents();
    const has = (actor: string, action: string) => rows.some((r) => r.includes(actor) && r.includes(action) && r.includes('ok'));
    for (const [actor, action] of [['bob@example.org', 'rebuild'], ['bob@example.org', 'cancel'], ['bob@example.org', 'sign-in'], ['alice@example.org', 'rollback'], ['alice@example.org', 'pause'], ['alice@example.org', 'resume'], ['alice@example.org', 'sign-in']]) {
      expect(has(actor!, action!), `${actor} ${action}`).toBe(true);
    }
    const api = (await (await fetch(`${url}/api/audit?actor=alice@example.org&action=rollback`, AUTH)).json()).entries;
    expect(api[0]).toMatchObject({ role: 'admin', via: 'session:oidc', target: 'site', result: 'ok', address: '127.0.0.1' });
    await ctx.close();
  });
});
