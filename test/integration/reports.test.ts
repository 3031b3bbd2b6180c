import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { createLogger } from '../../src/lib/logger.ts';
import type { RunEvent } from '../../src/pipeline/events.ts';
import { OutboundQueue } from '../../src/queue/outbound.ts';
import { Integrations } from '../../src/report/integrations.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore } from '../../src/store/run-store.ts';
import { testConfig } from '../helpers/config.ts';
import { reportingSecrets, verifyStandardWebhook, type ReportingSecrets } from '../helpers/reporting.ts';
import { startGitHubStandIn, type GitHubStandIn } from '../support/github-api.ts';
import { startReceiver, type Receiver } from '../support/receivers.ts';

/**
 * GitHub reports and notifications through the real report queue (BullMQ on Redis),
 * the real store, Octokit and real HTTP, against receivers that check every request
 * (GitHub's OpenAPI description, Slack's Block Kit rules, Standard Webhooks). Runs are
 * driven by applying the worker events a real run emits, so every outcome can be
 * produced in milliseconds; test/integration/reporting-e2e.test.ts does the same
 * on the real engine.
 */
const REPO = 'acme/reports';
const PUBLIC = 'http://deployer.example.test';
const SITE = 'https://site.example.test';

interface Setup {
  config: Config;
  store: RunStore;
  integrations: Integrations;
  outbound: OutboundQueue;
  redis: Redis[];
  close(): Promise<void>;
}

let github: GitHubStandIn;
let slack: Receiver;
let hooks: Receiver;
let secrets: ReportingSecrets;
const setups: Setup[] = [];

async function setup(mode: 'app' | 'token', notify: string, extraGithub = ''): Promise<Setup> {
  const githubExtra =
    mode === 'app'
      ? `  apiUrl: ${github.url}\n  app: { id: 4242, privateKeyFile: ${secrets.appKeyFile} }\n${extraGithub}`
      : `  apiUrl: ${github.url}\n  tokenFile: ${secrets.tokenFile}\n${extraGithub}`;
  const config = testConfig({
    publicUrl: PUBLIC,
    githubExtra,
    extra: notify,
    pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5000/x', services: ['svc_a'], extra: `    publicUrl: ${SITE}` }],
  });
  const db = openDatabase(join(config.dataDir, 'deployer.db'));
  const store = new RunStore(db);
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const integrations = new Integrations({ config, store, driftOf: () => null, log, sweepMs: 200, githubRetries: 0 });
  // As the daemon wires it: the store's notification of applied changes.
  store.onApplied((events) => integrations.applied(events));
  const producer = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  const workerConn = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const outbound = new OutboundQueue({ producer, workerConnection: workerConn, prefix: config.redisPrefix, storeId: store.id, handlers: integrations.handlers, log, baseDelayMs: 300, maxDelayMs: 2000 });
  integrations.attach(outbound);
  integrations.start();
  outbound.start();
  const s: Setup = {
    config,
    store,
    integrations,
    outbound,
    redis: [producer, workerConn],
    async close() {
      integrations.stop();
      await outbound.close();
      const keys = await producer.keys(`${config.redisPrefix}:*`);
      if (keys.length) await producer.del(...keys);
      producer.disconnect();
      workerConn.disconnect();
      db.close();
      rmSync(dirname(config.dataDir), { recursive: true, force: true });
    },
  };
  setups.push(s);
  return s;
}

const SHA = (n: number) => n.toString(16).padStart(40, 'a');
const at = () => new Date().toISOString();

/** The worker events of a run, as the runner emits them, applied to the store (which tells the observer). */
function live(s: Setup, runId: string) {
  const emit = (e: RunEvent) => {
    if (!s.store.apply(e)) throw new Error(`the store refused ${e.type} for ${runId}`);
  };
  return {
    start(sha: string) {
      emit({ type: 'run.started', runId, at: at(), worker: 'test-1', attempt: 1 });
      emit({ type: 'stage.started', runId, stage: 'fetch', at: at() });
      emit({ type: 'run.commit', runId, commit: sha, subject: 'Make <it> & "better"', author: 'Ada' });
      emit({ type: 'stage.finished', runId, stage: 'fetch', status: 'succeeded', at: at() });
    },
    build(ok: boolean) {
      emit({ type: 'stage.started', runId, stage: 'build', at: at() });
      if (!ok) {
        emit({ type: 'stage.finished', runId, stage: 'build', status: 'failed', at: at(), error: 'RUN exited 3' });
        for (const stage of ['push', 'deploy'] as const) emit({ type: 'stage.finished', runId, stage, status: 'skipped', at: at() });
        emit({ type: 'run.finished', runId, status: 'failed', at: at(), error: 'build: RUN exited 3' });
        return;
      }
      emit({ type: 'stage.finished', runId, stage: 'build', status: 'succeeded', at: at() });
      emit({ type: 'stage.started', runId, stage: 'push', at: at() });
      emit({ type: 'image', runId, ref: '127.0.0.1:5000/x:live@sha256:1', digest: 'sha256:1' });
      emit({ type: 'stage.finished', runId, stage: 'push', status: 'succeeded', at: at() });
    },
    deployStart() {
      emit({ type: 'stage.started', runId, stage: 'deploy', at: at() });
    },
    deploy(outcome: 'succeeded' | 'rolled_back', sha: string) {
      emit({ type: 'service.result', runId, at: at(), result: { service: 'svc_a', outcome, previousImage: 'old', image: outcome === 'succeeded' ? 'new' : 'old', taskErrors: [], message: outcome === 'succeeded' ? 'converged' : 'task exited (1); rolled back, old version serves' } });
      if (outcome === 'succeeded') {
        emit({ type: 'deployed', runId, service: 'svc_a', image: '127.0.0.1:5000/x:live@sha256:1', digest: 'sha256:1', commit: sha, at: at() });
        emit({ type: 'stage.finished', runId, stage: 'deploy', status: 'succeeded', at: at() });
        emit({ type: 'run.finished', runId, status: 'succeeded', at: at() });
      } else {
        emit({ type: 'stage.finished', runId, stage: 'deploy', status: 'failed', at: at(), error: 'svc_a rolled back: task exited (1)' });
        emit({ type: 'run.finished', runId, status: 'failed', at: at(), error: 'deploy: svc_a rolled back: task exited (1)' });
      }
    },
    superseded(by: string) {
      emit({ type: 'stage.finished', runId, stage: 'build', status: 'cancelled', at: at(), error: `superseded by ${by}` });
      for (const stage of ['push', 'deploy'] as const) emit({ type: 'stage.finished', runId, stage, status: 'cancelled', at: at() });
      emit({ type: 'run.finished', runId, status: 'superseded', at: at(), error: `superseded by ${by}`, supersededBy: by });
    },
  };
}

function newRun(s: Setup, sha: string | null = null): string {
  return s.store.createRuns([{ pipeline: 'site', trigger: 'push', commit: sha }])[0]!.id;
}

/** A full successful run; returns its id. */
function succeed(s: Setup, sha: string): string {
  const id = newRun(s, sha);
  const r = live(s, id);
  r.start(sha);
  r.build(true);
  r.deployStart();
  r.deploy('succeeded', sha);
  return id;
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; GitHub saw: ${JSON.stringify(github.requests.map((r) => [r.method, r.path, r.status]))} ${JSON.stringify(github.violations)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const slackYaml = () => `notify:\n  - { slack: { webhookUrlFile: ${secrets.slackUrlFile} }, on: [failed, rolled_back, timed_out, recovered, drift] }\n  - { webhook: { url: ${hooks.url}/deploy-events, secretFile: ${secrets.webhookSecretFile} }, on: [all], timeout: 1s }`;

describe('GitHub reports and notifications through the report queue', () => {
  beforeAll(async () => {
    slack = await startReceiver({ kind: 'slack' });
    hooks = await startReceiver({ kind: 'webhook' });
    secrets = reportingSecrets(slack.url);
    github = await startGitHubStandIn({ token: secrets.token, app: { id: 4242, publicKey: secrets.publicKeyPem, installations: { [REPO]: 77 } } });
  });

  afterEach(async () => {
    for (const x of setups.splice(0)) await x.close().catch(() => undefined);
    expect(github.violations).toEqual([]);
    expect(slack.violations).toEqual([]);
    expect(hooks.violations).toEqual([]);
  });

  afterAll(async () => {
    for (const s of setups) await s.close().catch(() => undefined);
    await github?.close();
    await slack?.close();
    await hooks?.close();
    if (secrets) rmSync(secrets.dir, { recursive: true, force: true });
  });

  it('App: a deployment per run with statuses in order, the replaced one made inactive, a check run per pipeline', async () => {
    const s = await setup('app', '');
    const first = succeed(s, SHA(1));
    await until('first success', () => github.deployments.find((d) => d.ref === SHA(1))?.statuses.length === 3);
    const second = succeed(s, SHA(2));
    await until('second success and inactive', () => github.deployments.find((d) => d.ref === SHA(1))?.statuses.length === 4 && github.deployments.find((d) => d.ref === SHA(2))?.statuses.length === 3);
    expect(github.statusSequences('production')).toEqual([
      { ref: SHA(1), states: ['queued', 'in_progress', 'success', 'inactive'] },
      { ref: SHA(2), states: ['queued', 'in_progress', 'success'] },
    ]);
    const d2 = github.deployments.find((d) => d.ref === SHA(2))!;
    expect(d2.payload).toMatchObject({ pipeline: 'site', run: second });
    const success = d2.statuses[2]!;
    expect(success.environment_url).toBe(SITE);
    expect(success.log_url).toBe(`${PUBLIC}/runs/${second}`);
    expect(github.deployments.find((d) => d.ref === SHA(1))!.statuses[3]!.description).toContain(second);
    // App auth as GitHub wants it: a JWT for the installation lookup and the token, then the installation token.
    const auths = github.requests.map((r) => `${r.operationId}:${r.auth}`);
    expect(auths).toContain('apps/get-repo-installation:jwt');
    expect(auths).toContain('apps/create-installation-access-token:jwt');
    expect(github.requests.filter((r) => r.operationId?.startsWith('repos/') || r.operationId?.startsWith('checks/')).every((r) => r.auth === 'installation')).toBe(true);
    // One check run per pipeline and commit, completed with a summary of the stages.
    await until('check runs completed', () => github.checkRuns.filter((c) => c.current.status === 'completed').length === 2);
    const check = github.checkRuns.find((c) => c.head_sha === SHA(1))!;
    expect(check).toMatchObject({ name: 'deployer/site', external_id: first, details_url: `${PUBLIC}/runs/${first}` });
    expect(check.current.conclusion).toBe('success');
    expect(check.current.output.summary).toMatch(/\| build \| succeeded \|/);
    expect(check.current.output.summary).toMatch(/\| svc_a \| succeeded \|/);
    expect(github.checkRuns.filter((c) => c.head_sha === SHA(1))).toHaveLength(1);
  });

  it('rollback, build failure and superseded runs: failure or error statuses that say why', async () => {
    const s = await setup('app', '', '  environment: staging');
    const rolled = newRun(s, SHA(3));
    const r = live(s, rolled);
    r.start(SHA(3));
    r.build(true);
    r.deployStart();
    r.deploy('rolled_back', SHA(3));
    const broken = newRun(s, SHA(4));
    const b = live(s, broken);
    b.start(SHA(4));
    b.build(false);
    const old = newRun(s, SHA(5));
    const o = live(s, old);
    o.start(SHA(5));
    const newer = newRun(s, SHA(6));
    o.superseded(newer);
    const final = (x: { states: string[] }) => ['success', 'failure', 'error'].includes(x.states.at(-1)!);
    await until('three final statuses', () => github.statusSequences('staging').filter(final).length === 3);
    const byRef = (sha: string) => github.deployments.find((d) => d.ref === sha && d.environment === 'staging')!;
    expect(byRef(SHA(3)).statuses.map((x) => x.state)).toEqual(['queued', 'in_progress', 'failure']);
    expect(byRef(SHA(3)).statuses[2]!.description).toMatch(/^Rolled back: deploy: svc_a rolled back/);
    expect(byRef(SHA(4)).statuses.map((x) => x.state)).toEqual(['queued', 'failure']);
    expect(byRef(SHA(4)).statuses[1]!.description).toBe('Failed at build: build: RUN exited 3');
    expect(byRef(SHA(5)).statuses.map((x) => x.state)).toEqual(['queued', 'error']);
    expect(byRef(SHA(5)).statuses[1]!.description).toBe(`Superseded: superseded by run ${newer}`);
    await until('checks done', () => github.checkRuns.filter((c) => [SHA(3), SHA(4), SHA(5)].includes(c.head_sha) && c.current.status === 'completed').length === 3);
    const conclusion = (sha: string) => github.checkRuns.find((c) => c.head_sha === sha)!.current.conclusion;
    expect([conclusion(SHA(3)), conclusion(SHA(4)), conclusion(SHA(5))]).toEqual(['failure', 'failure', 'skipped']);
    // None of these replaced what serves: nothing was made inactive.
    expect(github.deployments.flatMap((d) => d.statuses).filter((x) => x.state === 'inactive' && x.description.includes(newer))).toEqual([]);
  });

  it('GitHub down (502): nothing waits; the statuses arrive in order once it is back, each attempt recorded', async () => {
    const s = await setup('app', '', '  environment: outage');
    const started = Date.now();
    github.outage(4000, 502);
    const id = succeed(s, SHA(7));
    expect(Date.now() - started).toBeLessThan(1000); // observing queues; it never calls GitHub
    await until('every step sent after the outage', () => {
      const steps = s.integrations.reports.stepsOfRun(id);
      return steps.length > 0 && steps.every((x) => x.status !== 'pending') && github.deployments.find((x) => x.ref === SHA(7) && x.environment === 'outage')?.statuses.length === 3;
    });
    const d = github.deployments.find((x) => x.ref === SHA(7) && x.environment === 'outage')!;
    expect(d.statuses.map((x) => x.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(d.statuses[0]!.at).toBeGreaterThanOrEqual(started + 4000);
    const failed502 = github.requests.filter((r) => r.status === 502 && r.at >= started);
    expect(failed502.length).toBeGreaterThan(0);
    const steps = s.integrations.reports.stepsOfRun(id);
    expect(steps.every((x) => x.status === 'sent' || x.status === 'skipped')).toBe(true);
    const first = steps[0]!;
    expect(first.kind).toBe('deployment');
    const attempts = s.integrations.reports.attempts('github', String(first.seq));
    expect(attempts.some((a) => a.status === 502)).toBe(true);
    expect(attempts.at(-1)!.status).toBe(201);
    // The pipeline API's fields show them.
    const fields = s.integrations.pipelineFields('site');
    expect(fields.reports.github.some((g) => g.attempts.some((a) => a.status === 502))).toBe(true);
  });

  it('credentials GitHub refuses: the report is refused (not retried) and the pipeline shows a warning until reports work again', async () => {
    const s = await setup('token', '', '  environment: refused');
    github.revokeCredentials(true);
    const id = succeed(s, SHA(8));
    await until('warning', () => s.integrations.reports.warnings('site').length > 0);
    const warning = s.integrations.reports.warnings('site')[0]!;
    expect(warning.message).toMatch(/GitHub refused the deployment of run .*: GitHub answered 401: Bad credentials/);
    await until('all refused', () => s.integrations.reports.stepsOfRun(id).every((x) => x.status === 'refused' || x.status === 'skipped'));
    const attempts = s.integrations.reports.stepsOfRun(id).map((x) => x.attempts);
    expect(s.integrations.reports.stepsOfRun(id).find((x) => x.state === 'success' && x.kind === 'deployment_status')!.lastError).toMatch(/no GitHub deployment/);
    expect(Math.max(...attempts)).toBe(1); // a refusal is not retried
    github.revokeCredentials(false);
    succeed(s, SHA(9));
    await until('warning cleared', () => s.integrations.reports.warnings('site').length === 0);
    // A token reports commit statuses (check runs need an App).
    await until('commit statuses', () => github.commitStatuses.some((c) => c.sha === SHA(9) && c.state === 'success'));
    const statuses = github.commitStatuses.filter((c) => c.sha === SHA(9));
    expect(statuses[0]!.context).toBe('deployer/site');
    expect(statuses.at(-1)).toMatchObject({ state: 'success', context: 'deployer/site' });
    expect(github.checkRuns.filter((c) => c.head_sha === SHA(9))).toEqual([]);
    expect(github.statusSequences('refused').find((x) => x.ref === SHA(9))!.states).toEqual(['queued', 'in_progress', 'success']);
  });

  it('Slack hears of rollbacks and recoveries (Block Kit); the webhook gets every event, signed per Standard Webhooks', async () => {
    const s = await setup('app', slackYaml(), '  report: []');
    const rolled = newRun(s, SHA(10));
    const r = live(s, rolled);
    r.start(SHA(10));
    await until('started seen', () => s.integrations.notifications.ofRun(rolled).length > 0);
    r.build(true);
    r.deployStart();
    r.deploy('rolled_back', SHA(10));
    const ok = newRun(s, SHA(11));
    const g = live(s, ok);
    g.start(SHA(11));
    await until('started seen', () => s.integrations.notifications.ofRun(ok).length > 0);
    g.build(true);
    g.deployStart();
    g.deploy('succeeded', SHA(11));
    await until('slack messages', () => slack.received.length >= 2);
    const events = slack.received.map((m) => m.json.text as string);
    expect(events[0]).toMatch(/site: rolled back — aaaaaaa/);
    expect(events[1]).toMatch(/site: recovered/);
    const rolledMsg = JSON.stringify(slack.received[0]!.json);
    expect(rolledMsg).toContain(`${PUBLIC}/runs/${rolled}`);
    expect(rolledMsg).toContain(`${github.url}/${REPO}/commit/${SHA(10)}`); // the web URL of apiUrl's GitHub
    expect(rolledMsg).toContain('Make &lt;it&gt; &amp; \\"better\\"');
    expect(rolledMsg).toContain('Ada');
    expect(rolledMsg).toMatch(/\*Why:\* deploy: svc_a rolled back/);
    await until('webhooks', () => s.integrations.notifications.ofRun(ok).concat(s.integrations.notifications.ofRun(rolled)).every((n) => n.status === 'sent') && hooks.received.length >= 3);
    const types = hooks.received.map((h) => h.json.type);
    expect(types).toEqual(expect.arrayContaining(['run.started', 'run.rolled_back', 'run.succeeded', 'run.recovered']));
    expect(types.filter((t) => t === 'run.started')).toHaveLength(2);
    for (const h of hooks.received) await verifyStandardWebhook(h, secrets.webhookSecret);
    const recovered = hooks.received.find((h) => h.json.type === 'run.recovered')!;
    expect(recovered.json.data).toMatchObject({ pipeline: 'site', outcome: 'succeeded', commit: { sha: SHA(11), short: SHA(11).slice(0, 7), author: 'Ada' }, run: { id: ok, url: `${PUBLIC}/runs/${ok}` } });
    expect(recovered.headers['webhook-id']).toMatch(/^msg_/);
    // Nothing twice: applying the same events again changes nothing.
    const before = hooks.received.length;
    s.integrations.observe(s.store.getRun(ok)!);
    s.integrations.sweep();
    await new Promise((res) => setTimeout(res, 500));
    expect(hooks.received.length).toBe(before);
  });

  it('a receiver that hangs is timed out and retried with the same webhook-id; one that says 410 is not retried', async () => {
    const s = await setup('app', slackYaml(), '  report: []');
    hooks.behave('hang');
    slack.behave(410);
    const from = hooks.received.length;
    const rolled = newRun(s, SHA(12));
    const r = live(s, rolled);
    r.start(SHA(12));
    r.build(true);
    r.deployStart();
    r.deploy('rolled_back', SHA(12));
    await until('a hung attempt timed out', () => s.integrations.notifications.ofRun(rolled).some((n) => n.event === 'rolled_back' && n.channel === 'webhook' && n.attempts >= 1));
    const n = s.integrations.notifications.ofRun(rolled).find((x) => x.event === 'rolled_back' && x.channel === 'webhook')!;
    const attempt = s.integrations.reports.attempts('notify', n.id)[0]!;
    expect(attempt).toMatchObject({ status: null, error: 'no answer within 1 s' });
    expect(attempt.ms).toBeGreaterThanOrEqual(900);
    hooks.behave('ok');
    await until('delivered after the receiver recovered', () => s.integrations.notifications.ofRun(rolled).find((x) => x.id === n.id)!.status === 'sent');
    const copies = hooks.received.slice(from).filter((h) => h.headers['webhook-id'] === n.id);
    expect(copies.length).toBeGreaterThanOrEqual(2); // the hung attempt, then the delivered one
    expect(new Set(copies.map((c) => c.body)).size).toBe(1);
    for (const c of copies) await verifyStandardWebhook(c, secrets.webhookSecret);
    await until('slack refused', () => s.integrations.notifications.ofRun(rolled).find((x) => x.channel === 'slack')?.status === 'refused');
    const refused = s.integrations.notifications.ofRun(rolled).find((x) => x.channel === 'slack')!;
    expect(refused.attempts).toBe(1);
    expect(refused.lastCode).toBe(410);
    slack.behave('ok');
    const fields = s.integrations.pipelineFields('site');
    expect(fields.notifications.find((x) => x.id === n.id)).toMatchObject({ status: 'sent', channel: 'webhook', receiver: `webhook ${hooks.url}/… (notify[1])` });
    // The path is left out: many services put their token in it.
    expect(JSON.stringify(fields)).not.toContain('/deploy-events');
    expect(JSON.stringify(fields)).not.toContain(secrets.slackUrl.split('/').pop());
  });
});
