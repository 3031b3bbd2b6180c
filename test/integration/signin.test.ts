import { type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { launchChromium } from '../helpers/browser.ts';
import { AUTH, testConfig } from '../helpers/config.ts';
import { freePort } from '../helpers/process.ts';
import { disposeQueues } from '../helpers/world.ts';
import { startFakeGithub, type FakeGithub } from '../support/github-oauth.ts';
import { startOidcProvider, type TestOidc } from '../support/oidc.ts';

/**
 * Signing in through a real OpenID Connect provider (oidc-provider, run here) and
 * through GitHub's OAuth endpoints (a local server checked against GitHub's OpenAPI
 * description), in a real browser: roles from auth.users, organisations, refusals,
 * and each attempt in the audit trail.
 */
describe('sign-in with OpenID Connect and GitHub, in a real browser', () => {
  let config: Config;
  let daemon: Daemon;
  let oidc: TestOidc;
  let github: FakeGithub;
  let browser: Browser;
  let url: string;

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    oidc = await startOidcProvider(`${url}/auth/oidc/callback`);
    github = await startFakeGithub();
    config = testConfig({
      pipelines: [{ name: 'site', repo: 'acme/signin', image: '127.0.0.1:5999/signin', services: [] }],
      listen: `127.0.0.1:${port}`,
      publicUrl: url,
      authYaml: `  github: { clientId: ${github.clientId}, clientSecret: ${github.clientSecret}, allowOrgs: [OCaml], apiUrl: "${github.apiUrl}", webUrl: "${github.webUrl}" }
  oidc: { issuer: "${oidc.issuer}", clientId: ${oidc.clientId}, clientSecret: ${oidc.clientSecret} }
  users: { alice: admin, "bob@example.org": operator }
`,
    });
    daemon = await startDaemon(config, { http: true, worker: false });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.close();
    await oidc?.stop();
    await github?.stop();
    await disposeQueues(config);
  });

  const who = (page: Page) => page.locator('header .who span').first().textContent();

  it('signs in through the OpenID provider with the role auth.users gives, and refuses someone not listed', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const res = await page.goto(`${url}/pipelines/site`);
    expect(res!.status()).toBe(401);
    await page.getByRole('link', { name: `Sign in with ${new URL(oidc.issuer).host}` }).click();
    // The provider's own login and consent pages.
    await page.locator('input[name=login]').fill('bob');
    await page.locator('input[name=password]').fill('anything');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${url}/pipelines/site`);
    expect(await who(page)).toBe('bob@example.org · operator');
    expect(await page.getByRole('button', { name: 'Rebuild' }).count()).toBe(1);
    expect(await page.getByText('Pause…').count()).toBe(0); // admin only
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${url}/signin?done=signed-out`);
    expect((await page.goto(`${url}/`))!.status()).toBe(401);
    await ctx.close();

    const ctx2 = await browser.newContext();
    const page2 = await ctx2.newPage();
    await page2.goto(`${url}/signin`);
    await page2.getByRole('link', { name: /Sign in with 127\.0\.0\.1/ }).click();
    await page2.locator('input[name=login]').fill('mallory');
    await page2.locator('input[name=password]').fill('x');
    await page2.getByRole('button', { name: 'Sign-in' }).click();
    await page2.getByRole('button', { name: 'Continue' }).click();
    await page2.locator('.notice.bad').waitFor();
    expect(await page2.locator('.notice.bad').textContent()).toContain('mallory@example.org is not allowed here');
    expect((await page2.goto(`${url}/`))!.status()).toBe(401);
    await ctx2.close();
  });

  it('signs in with GitHub when the user is in an allowed organisation, and refuses one who is not', async () => {
    github.user = { login: 'alice', orgs: ['some-other', 'ocaml'] };
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${url}/signin`);
    await page.getByRole('link', { name: 'Sign in with GitHub' }).click();
    await page.waitForURL(`${url}/`);
    expect(await who(page)).toBe('alice · admin');
    await ctx.close();

    github.user = { login: 'eve', orgs: ['some-other'] };
    const ctx2 = await browser.newContext();
    const page2 = await ctx2.newPage();
    await page2.goto(`${url}/signin`);
    await page2.getByRole('link', { name: 'Sign in with GitHub' }).click();
    await page2.locator('.notice.bad').waitFor();
    expect(await page2.locator('.notice.bad').textContent()).toContain('eve is not a member of ocaml');
    expect((await page2.goto(`${url}/`))!.status()).toBe(401);
    await ctx2.close();

    // Every request to "GitHub" was one its documentation and OpenAPI description allow.
    expect(github.violations).toEqual([]);
    const api = github.requests.filter((r) => r.path.startsWith('/api/v3/')).map((r) => r.path);
    expect(api).toEqual(['/api/v3/user', '/api/v3/user/orgs', '/api/v3/user', '/api/v3/user/orgs']);
    expect(github.requests.find((r) => r.path === '/login/oauth/authorize')!.query.scope).toBe('read:org');
  });

  it('records each sign-in, refused ones too, in the audit trail', async () => {
    const entries = (await (await fetch(`${url}/api/audit?action=sign-in`, AUTH)).json()).entries as any[];
    const brief = entries.map((e) => [e.actor, e.via, e.result, e.role]);
    expect(brief).toContainEqual(['bob@example.org', 'session:oidc', 'ok', 'operator']);
    expect(brief).toContainEqual(['mallory@example.org', 'session:oidc', 'refused', null]);
    expect(brief).toContainEqual(['alice', 'session:github', 'ok', 'admin']);
    expect(entries.find((e) => e.result === 'refused' && /eve is not a member/.test(e.detail))).toBeTruthy();
    expect((await (await fetch(`${url}/api/audit?action=sign-out`, AUTH)).json()).entries[0]).toMatchObject({ actor: 'bob@example.org', via: 'session:oidc' });
    expect(JSON.stringify(entries)).not.toContain(github.clientSecret);
    expect(JSON.stringify(entries)).not.toContain(oidc.clientSecret);
  });
});
