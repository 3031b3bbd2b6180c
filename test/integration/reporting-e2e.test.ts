import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
import { deliver, example, pushPayload } from '../helpers/github.ts';
import { reportingSecrets, secretNeedles, verifyStandardWebhook, type ReportingSecrets } from '../helpers/reporting.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { createWorld, disposeQueues, type World } from '../helpers/world.ts';
import { startGitHubStandIn, type GitHubStandIn } from '../support/github-api.ts';
import { startPrometheus, type TestPrometheus } from '../support/prometheus.ts';
import { checkBlockKit, startReceiver, type Receiver } from '../support/receivers.ts';
import { exitingContainerFiles, failingBuildFiles, siteFiles, type FileMap } from '../support/site.ts';
import { dockerCli, waitForContent } from '../support/swarm.ts';

const REPO = 'acme/reporting';
const APP_ID = 31337;
const INSTALLATION = 4711;
const SITE_URL = 'https://site.example.test';
/** How long GitHub answers 502 in the outage test: 40 s (three times a deploy here, so the site is live before GitHub is back), longer with REPORTING_OUTAGE_MS. */
const OUTAGE_MS = Number(process.env.REPORTING_OUTAGE_MS ?? 40_000);
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * Reporting on the real engine: pushes deployed to a swarm service by the real daemon
 * tell GitHub (a stand-in validating every request against GitHub's OpenAPI
 * description, as a GitHub App), Slack and a signed webhook receiver, and are scraped
 * by a real Prometheus. Then a rollback, a recovery, a build failure, a superseded
 * run, a re-run asked from GitHub, GitHub down during a deploy, and a search for
 * secrets in everything the deployer wrote or answered.
 */
describe('reports where people look (real engine, GitHub stand-in, Slack, webhooks, Prometheus)', () => {
  let world: World;
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let github: GitHubStandIn;
  let slack: Receiver;
  let hooks: Receiver;
  let prometheus: TestPrometheus;
  let secrets: ReportingSecrets;
  let logText = '';
  const runs: Record<string, any> = {};

  beforeAll(async () => {
    world = await createWorld({ name: 'rep', services: ['rep-www'] });
    slack = await startReceiver({ kind: 'slack' });
    hooks = await startReceiver({ kind: 'webhook' });
    secrets = reportingSecrets(slack.url);
    github = await startGitHubStandIn({ token: secrets.token, app: { id: APP_ID, publicKey: secrets.publicKeyPem, installations: { [REPO]: INSTALLATION } } });
    config = testConfig({
      registry: world.registryConfig,
      driftInterval: '2s',
      publicUrl: 'http://deployer.example.test',
      githubExtra: `  apiUrl: ${github.url}\n  app: { id: ${APP_ID}, privateKeyFile: ${secrets.appKeyFile} }\n  tokenFile: ${secrets.tokenFile}\n  report: [deployments, checks]\n  environment: production`,
      extra: [
        'notify:',
        `  - { slack: { webhookUrlFile: ${secrets.slackUrlFile} }, on: [failed, rolled_back, timed_out, recovered, drift] }`,
        `  - { webhook: { url: ${hooks.url}/deploy-events, secretFile: ${secrets.webhookSecretFile} }, on: [all] }`,
        'metrics:',
        `  tokenFile: ${secrets.metricsTokenFile}`,
      ].join('\n'),
      pipelines: [
        {
          name: 'site', repo: REPO, url: world.repo.url, image: world.image, tag: 'live', services: [world.services[0]!],
          deploy: { monitor: '2s', timeout: '60s' }, cancelSuperseded: true, extra: `    publicUrl: ${SITE_URL}`,
        },
      ],
    });
    // Everything the daemon logs, at debug level, is kept to be searched for secrets.
    const sink = new Writable({
      write(chunk, _enc, done) {
        logText += chunk.toString();
        done();
      },
    });
    daemon = await startDaemon(config, { http: true, worker: true, port: 0, logger: createLogger('debug', sink), reports: { baseDelayMs: 500, maxDelayMs: 4000, sweepMs: 500 } });
    url = daemon.url!;
    prometheus = await startPrometheus({ target: url, bearerToken: secrets.metricsToken });
  });

  afterEach(() => {
    expect(github.violations).toEqual([]);
    expect(slack.violations).toEqual([]);
    expect(hooks.violations).toEqual([]);
  });

  afterAll(async () => {
    await prometheus?.stop();
    await daemon?.close();
    if (config) await disposeQueues(config);
    await world?.dispose();
    await github?.close();
    await slack?.close();
    await hooks?.close();
    if (secrets) rmSync(secrets.dir, { recursive: true, force: true });
  });

  const push = async (files: FileMap, message: string) => {
    const sha = await world.repo.commit(files, message);
    const res = await deliver(url, pushPayload(REPO, 'main', sha, message));
    expect(res.status).toBe(202);
    return { sha, runId: res.body.runs[0] as string };
  };
  const deploy = async (files: FileMap, message: string) => {
    const { sha, runId } = await push(files, message);
    return { sha, run: await waitForRun(url, runId, 240_000) };
  };
  const until = async <T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; GitHub saw ${JSON.stringify(github.requests.slice(-20).map((r) => [r.method, r.path, r.status]))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const deployment = (sha: string) => github.deployments.find((d) => d.ref === sha);
  const finalStatuses = (sha: string) => until(`final deployment status of ${sha.slice(0, 7)}`, () => {
    const d = deployment(sha);
    return d && ['success', 'failure', 'error'].includes(d.statuses.at(-1)?.state ?? '') ? d : undefined;
  });
  const reportsOf = async (runId: string) => (await fetch(`${url}/api/runs/${runId}/reports`, { headers: auth })).json() as Promise<any>;
  const delivered = (runId: string) => until(`notifications of ${runId} delivered`, async () => {
    const r = await reportsOf(runId);
    return r.notifications.length > 0 && r.notifications.every((n: any) => n.status === 'sent') ? r : undefined;
  });
  const scalar = async (expr: string) => Number((await prometheus.query(expr))[0]?.value[1] ?? NaN);

  it('a push: GitHub deployment statuses in order, a check run, a signed webhook, and Prometheus scraped it during the deploy', async () => {
    await until('first scrape', async () => (await prometheus.targets())[0]?.health === 'up');
    expect(await scalar('deployer_runs_total{pipeline="site",status="succeeded"}')).toBe(0);
    const { sha, run } = await deploy(siteFiles('A\n'), 'Serve A');
    expect(run.status).toBe('succeeded');
    runs.A = run;
    const d = await finalStatuses(sha);
    expect(d.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(d).toMatchObject({ environment: 'production', payload: { pipeline: 'site', run: run.id, trigger: 'push' } });
    expect(d.statuses[2]).toMatchObject({ environment_url: SITE_URL, log_url: `http://deployer.example.test/runs/${run.id}` });
    // The statuses happened in the run's order: queued before the rollout started.
    const check = await until('check run completed', () => github.checkRuns.find((c) => c.head_sha === sha && c.current.status === 'completed'));
    expect(check.current).toMatchObject({ name: 'deployer/site', conclusion: 'success', external_id: run.id });
    expect(check.current.output.summary).toContain('| deploy | succeeded |');
    expect(check.updates.length).toBeGreaterThanOrEqual(2); // created, then updated as stages went

    const r = await delivered(run.id);
    expect(r.notifications.map((n: any) => `${n.channel}:${n.event}`).sort()).toEqual(['webhook:started', 'webhook:succeeded']); // Slack is not told of plain successes
    const got = hooks.received.filter((h) => h.json?.data?.run?.id === run.id);
    expect(got.map((h) => h.json.type).sort()).toEqual(['run.started', 'run.succeeded']);
    for (const h of got) await verifyStandardWebhook(h, secrets.webhookSecret);
    expect(got.find((h) => h.json.type === 'run.succeeded')!.json.data).toMatchObject({ commit: { sha, subject: 'Serve A' }, outcome: 'succeeded', run: { status: 'succeeded', url: `http://deployer.example.test/runs/${run.id}` } });

    // Prometheus scraped every second during the deploy: the push→live sample and the success are there.
    await until('push→live sample in Prometheus', async () => (await scalar('deployer_push_to_live_seconds_count{pipeline="site"}')) === 1);
    expect(await scalar('deployer_runs_total{pipeline="site",status="succeeded"}')).toBe(1);
    expect(await scalar('increase(deployer_runs_total{pipeline="site",status="succeeded"}[5m])')).toBeGreaterThan(0);
    const live = await scalar('deployer_push_to_live_seconds_sum{pipeline="site"}');
    expect(live).toBeGreaterThan(0);
    expect(live).toBeLessThanOrEqual((Date.parse(run.finishedAt) - Date.parse(run.createdAt)) / 1000 + 1);
    expect(await scalar('deployer_stage_duration_seconds_count{pipeline="site",stage="build"}')).toBe(1);
    expect(await scalar('deployer_webhooks_total{event="push",result="accepted"}')).toBeGreaterThanOrEqual(1);
    expect(await scalar('deployer_last_success_timestamp_seconds{pipeline="site"}')).toBeCloseTo(Date.parse(run.finishedAt) / 1000, 0);
    expect(await scalar(`deployer_drift{pipeline="site",service="${world.services[0]}"}`)).toBe(0);
    expect(await scalar('deployer_queue_waiting{pipeline="site"}')).toBe(0);
    expect(await scalar('process_resident_memory_bytes')).toBeGreaterThan(0);
    // The metrics need a token.
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
  });

  it('a crashing image: rolled_back, GitHub failure naming the rollback, Slack rolled_back; the next good push: recovered, the replaced deployment inactive', async () => {
    const { sha: bad, run } = await deploy(exitingContainerFiles('B\n'), 'Crash on start');
    expect(run.status).toBe('rolled_back');
    expect(run.deploys[0].outcome).toBe('rolled_back');
    const d = await finalStatuses(bad);
    expect(d.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'failure']);
    expect(d.statuses[2]!.description).toMatch(/^Rolled back: deploy: .* rolled back/);
    expect(d.statuses[2]!.environment_url).toBeUndefined();
    const slackMsg = await until('Slack rolled_back', () => slack.received.find((m) => m.json.text.includes('rolled back')));
    expect(checkBlockKit(slackMsg.json)).toEqual([]);
    const text = JSON.stringify(slackMsg.json);
    for (const part of [`\`${bad.slice(0, 7)}\``, 'Crash on start', 'Deployer Test', `/runs/${run.id}`, `${REPO}/commit/${bad}`, '*Duration*']) expect(text).toContain(part);
    expect(hooks.received.some((h) => h.json.type === 'run.rolled_back' && h.json.data.run.id === run.id)).toBe(true);
    // What served before (A) still serves: its deployment is not made inactive by a failure.
    expect(deployment(runs.A.commit)!.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'success']);

    const { sha: good, run: ok } = await deploy(siteFiles('C\n'), 'Serve C');
    expect(ok.status).toBe('succeeded');
    runs.C = ok;
    await waitForContent(world.services[0]!, 'C\n', 30_000);
    const recovered = await until('Slack recovered', () => slack.received.find((m) => m.json.text.includes('recovered')));
    expect(JSON.stringify(recovered.json)).toContain(`\`${good.slice(0, 7)}\``);
    expect(checkBlockKit(recovered.json)).toEqual([]);
    await finalStatuses(good);
    await until('A inactive', () => deployment(runs.A.commit)!.statuses.at(-1)?.state === 'inactive');
    expect(deployment(runs.A.commit)!.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'success', 'inactive']);
    expect(deployment(good)!.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(slack.received.map((m) => m.json.text.split(' — ')[0])).toEqual(['↩️ site: rolled back', '💚 site: recovered']);
  });

  it('a build failure and a run superseded mid-build: failure and error, each saying why', async () => {
    const { sha: broken, run: failed } = await deploy(failingBuildFiles(), 'Broken Dockerfile');
    expect(failed.status).toBe('failed');
    const d = await finalStatuses(broken);
    expect(d.statuses.map((s) => [s.state, s.description.split(':')[0]])).toEqual([['queued', `Run ${failed.id}`], ['failure', 'Failed at build']]);
    const check = await until('failed check', () => github.checkRuns.find((c) => c.head_sha === broken && c.current.status === 'completed'));
    expect(check.current.conclusion).toBe('failure');
    expect(check.current.output.summary).toMatch(/\| build \| failed \|/);

    const slow = siteFiles('slow\n');
    slow.Dockerfile = slow.Dockerfile!.replace('COPY www /www', 'RUN ["/bin/sh","-c","sleep 60"]\nCOPY www /www');
    const first = await push(slow, 'Slow build');
    await until('slow build running', async () => {
      const r = await (await fetch(`${url}/api/runs/${first.runId}`, { headers: auth })).json();
      return r.stages.find((s: any) => s.name === 'build').status === 'running';
    });
    const second = await push(siteFiles('D\n'), 'Serve D');
    const superseded = await waitForRun(url, first.runId);
    expect(superseded).toMatchObject({ status: 'superseded', supersededBy: second.runId });
    expect((await waitForRun(url, second.runId, 240_000)).status).toBe('succeeded');
    const s = await finalStatuses(first.sha);
    expect(s.statuses.map((x) => x.state)).toEqual(['queued', 'error']);
    expect(s.statuses[1]!.description).toBe(`Superseded: superseded by run ${second.runId}`);
    const sc = await until('superseded check', () => github.checkRuns.find((c) => c.head_sha === first.sha && c.current.status === 'completed'));
    expect(sc.current.conclusion).toBe('skipped');
    expect((await finalStatuses(second.sha)).statuses.map((x) => x.state)).toEqual(['queued', 'in_progress', 'success']);
    runs.D = { commit: second.sha };
  });

  it('"Re-run" on GitHub (check_run.rerequested, signed) rebuilds that commit, recorded as from GitHub', async () => {
    const checkC = github.checkRuns.find((c) => c.head_sha === runs.C.commit)!;
    const payload = example('check_run', (x) => x.action === 'rerequested');
    payload.repository.full_name = REPO;
    payload.check_run = { ...payload.check_run, id: checkC.id, name: checkC.name, head_sha: runs.C.commit, external_id: checkC.external_id };
    payload.sender.login = 'octocat';
    const bad = await deliver(url, payload, { event: 'check_run', secret: 'not-the-secret' });
    expect(bad.status).toBe(401);
    const res = await deliver(url, payload, { event: 'check_run', delivery: 'rerun-delivery-1' });
    expect(res.status).toBe(202);
    expect(res.body.runs).toHaveLength(1);
    const again = await deliver(url, payload, { event: 'check_run', delivery: 'rerun-delivery-1' });
    expect(again.body).toEqual(res.body); // a redelivery starts nothing new
    const run = await waitForRun(url, res.body.runs[0], 240_000);
    expect(run).toMatchObject({ status: 'succeeded', trigger: 'rebuild', commit: runs.C.commit, requestedBy: 'github:octocat', deliveryId: 'rerun-delivery-1' });
    await waitForContent(world.services[0]!, 'C\n', 30_000);
    const redeploys = await until('a second deployment of C', () => {
      const list = github.deployments.filter((d) => d.ref === runs.C.commit);
      return list.length === 2 && list[1]!.statuses.at(-1)?.state === 'success' ? list : undefined;
    });
    expect(redeploys[1]!.payload).toMatchObject({ run: run.id, trigger: 'rebuild' });
    // In the audit trail, as from GitHub.
    const audit = await (await fetch(`${url}/api/audit?action=rerun`, { headers: auth })).json();
    expect(audit.entries).toHaveLength(1);
    expect(audit.entries[0]).toMatchObject({ actor: 'github:octocat', via: 'github-webhook', action: 'rerun', target: 'site', result: 'ok', detail: expect.stringContaining(run.id) });
    expect(await scalar('deployer_webhooks_total{event="check_run",result="accepted"}')).toBeGreaterThanOrEqual(1);
    expect(await scalar('deployer_webhooks_total{event="check_run",result="unauthorized"}')).toBeNaN(); // a bad signature never names its event
    expect(await scalar('deployer_webhooks_total{event="other",result="unauthorized"}')).toBeGreaterThanOrEqual(1);
    runs.rerun = run;
  });

  it(`GitHub answering 502 (${OUTAGE_MS / 1000} s): the deploy is not delayed; the reports arrive once GitHub is back`, async () => {
    const outageStart = Date.now();
    github.outage(OUTAGE_MS, 502);
    const { sha, run } = await deploy(siteFiles('E\n'), 'Serve E while GitHub is down');
    expect(run.status).toBe('succeeded');
    // Not delayed: the run's wall time is its stages' time plus what it always costs to
    // pick up a job; nothing waited for GitHub.
    const stagesMs = run.stages.filter((s: any) => s.startedAt && s.finishedAt).reduce((n: number, s: any) => n + (Date.parse(s.finishedAt) - Date.parse(s.startedAt)), 0);
    const totalMs = Date.parse(run.finishedAt) - Date.parse(run.createdAt);
    expect(totalMs - stagesMs).toBeLessThan(3000);
    const baseline = Date.parse(runs.rerun.finishedAt) - Date.parse(runs.rerun.createdAt);
    expect(totalMs).toBeLessThan(baseline * 2 + 5000);
    if (OUTAGE_MS >= 30_000) expect(Date.parse(run.finishedAt)).toBeLessThan(outageStart + OUTAGE_MS); // it was live before GitHub came back
    // GitHub was asked and said 502; the attempts show on the pipeline.
    await until('a 502 recorded', async () => {
      const p = await (await fetch(`${url}/api/pipelines/site`, { headers: auth })).json();
      return p.reports.github.some((g: any) => g.run === run.id && g.attempts.some((a: any) => a.status === 502));
    });
    const d = await finalStatuses(sha);
    expect(d.statuses.map((s) => s.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(d.statuses[0]!.at).toBeGreaterThanOrEqual(outageStart + OUTAGE_MS);
    expect(github.requests.some((r) => r.status === 502 && r.at >= outageStart)).toBe(true);
    await until('C inactive', () => github.deployments.filter((x) => x.ref === runs.C.commit).every((x) => x.statuses.at(-1)?.state === 'inactive'));
    const p = await (await fetch(`${url}/api/pipelines/site`, { headers: auth })).json();
    expect(p.warnings).toEqual([]);
    expect(p.notifications.length).toBeGreaterThan(0);
    expect(p.notifications.every((n: any) => n.attempts.every((a: any) => typeof a.status === 'number'))).toBe(true);
  });

  it('a service changed by hand: Slack and the webhook hear of the drift, deployer_drift is 1', async () => {
    const service = world.services[0]!;
    await dockerCli(['service', 'update', '--detach', '--quiet', '--with-registry-auth', '--image', world.seedRef, service], { registry: world.registry });
    const msg = await until('Slack drift', () => slack.received.find((m) => m.json.text.includes('drift')), 90_000);
    expect(checkBlockKit(msg.json)).toEqual([]);
    expect(JSON.stringify(msg.json)).toContain(service);
    const hook = await until('webhook drift', () => hooks.received.find((h) => h.json.type === 'pipeline.drift'));
    await verifyStandardWebhook(hook, secrets.webhookSecret);
    expect(hook.json.data).toMatchObject({ pipeline: 'site', services: [{ service, actual: expect.stringContaining(world.imageRepo) }] });
    await until('deployer_drift = 1', async () => (await scalar(`deployer_drift{pipeline="site",service="${service}"}`)) === 1);
    // Told once per change, not at every look: more sweeps create no more notifications.
    daemon.integrations!.sweep();
    daemon.integrations!.sweep();
    const p = await (await fetch(`${url}/api/pipelines/site`, { headers: auth })).json();
    expect(p.drift).toHaveLength(1);
    expect(p.notifications.filter((n: any) => n.event === 'drift').map((n: any) => n.channel).sort()).toEqual(['slack', 'webhook']);
  });

  it('no secret (App key, tokens, Slack URL, webhook secret, metrics token) in any log, DB row, API response, page, notification, GitHub request or Redis key', async () => {
    const needles = secretNeedles(secrets, [...github.issuedTokens, ADMIN_TOKEN]);
    expect(github.issuedTokens.length).toBeGreaterThan(0);
    const haystacks: [string, string][] = [['daemon log', logText]];
    const dbDir = config.dataDir;
    for (const f of ['deployer.db', 'deployer.db-wal']) {
      try {
        haystacks.push([f, readFileSync(join(dbDir, f)).toString('latin1')]);
      } catch {
        /* no WAL file */
      }
    }
    const get = async (path: string) => [path, await (await fetch(`${url}${path}`, { headers: auth })).text()] as [string, string];
    const runIds = Object.values(runs).map((r: any) => r.id).filter(Boolean);
    haystacks.push(await get('/api/pipelines'), await get('/api/pipelines/site'), await get('/pipelines/site'), await get('/metrics'), await get('/api/pipelines/site/runs?limit=200'));
    for (const id of runIds) haystacks.push(await get(`/api/runs/${id}`), await get(`/api/runs/${id}/reports`), [`log ${id}`, await runLog(url, id)]);
    haystacks.push(['slack bodies', JSON.stringify(slack.received.map((r) => [r.headers, r.body]))]);
    haystacks.push(['webhook bodies', JSON.stringify(hooks.received.map((r) => [r.headers['webhook-id'], r.body]))]);
    haystacks.push(['GitHub request bodies', JSON.stringify(github.requests.map((r) => r.body))]);
    const redis = new Redis(config.redisUrl);
    try {
      let dump = '';
      for (const key of await redis.keys(`${config.redisPrefix}:*`)) {
        const type = await redis.type(key);
        if (type === 'string') dump += await redis.get(key);
        else if (type === 'hash') dump += JSON.stringify(await redis.hgetall(key));
        else if (type === 'list') dump += JSON.stringify(await redis.lrange(key, 0, -1));
        else if (type === 'zset') dump += JSON.stringify(await redis.zrange(key, '0', '-1'));
        else if (type === 'stream') dump += JSON.stringify(await redis.xrange(key, '-', '+'));
        else if (type === 'set') dump += JSON.stringify(await redis.smembers(key));
        dump += key;
      }
      haystacks.push(['redis', dump]);
    } finally {
      redis.disconnect();
    }
    expect(logText.length).toBeGreaterThan(10_000); // the log was really captured
    for (const [where, text] of haystacks) {
      for (const needle of needles) {
        expect(text.includes(needle), `a secret (${needle.slice(0, 6)}…) appears in ${where}`).toBe(false);
      }
    }
  });
});
