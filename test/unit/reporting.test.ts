import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/lib/secret.ts';
import { runEvents } from '../../src/notify/events.ts';
import { slackDriftMessage, slackRunMessage, webhookRunPayload } from '../../src/notify/messages.ts';
import { standardSignature } from '../../src/notify/senders.ts';
import { routeWebhook } from '../../src/pipeline/routing.ts';
import { checkRunPlan, commitStatusPlan, deploymentStatuses, statusesAfter } from '../../src/report/github/plan.ts';
import type { RunView, StageView } from '../../src/store/run-store.ts';
import { example } from '../helpers/github.ts';
import { checkBlockKit } from '../support/receivers.ts';

const SHA = 'c0ffee'.padEnd(40, '0');
const ctx = { runUrl: 'https://deploy.example.org/runs/r1', services: ['www'] };

function stage(name: StageView['name'], status: StageView['status'], error: string | null = null): StageView {
  const done = status !== 'pending' && status !== 'running';
  // Stages cancelled or skipped after an earlier one stopped never started.
  const started = status === 'running' || status === 'succeeded' || status === 'failed';
  return { name, status, startedAt: started ? '2025-01-01T00:00:00.000Z' : null, finishedAt: done && started ? '2025-01-01T00:00:02.500Z' : null, error };
}

function run(over: Partial<RunView>): RunView {
  return {
    id: 'r1', pipeline: 'www', commit: SHA, subject: 'Fix the <header> & footer', author: 'Ada', status: 'running', trigger: 'push',
    stages: [stage('fetch', 'pending'), stage('build', 'pending'), stage('push', 'pending'), stage('deploy', 'pending')],
    image: null, createdAt: '2025-01-01T00:00:00.000Z', startedAt: '2025-01-01T00:00:00.000Z', finishedAt: null, error: null, deliveryId: null,
    requestedBy: null, attempts: 1, supersededBy: null, worker: 'w', targetImage: null, deploys: [], setAsideEvents: 0,
    verify: null, probe: null, verifyPrevious: null, follows: null, followedBy: null, ...over,
  };
}

const states = (r: RunView) => deploymentStatuses(r, true, ctx).map((s) => s.state);

describe('GitHub deployment statuses (pure)', () => {
  const succeeded = run({
    status: 'succeeded', finishedAt: '2025-01-01T00:01:20.000Z',
    stages: [stage('fetch', 'succeeded'), stage('build', 'succeeded'), stage('push', 'succeeded'), stage('deploy', 'succeeded')],
    deploys: [{ service: 'www', outcome: 'succeeded', previousImage: 'a', image: 'b', taskErrors: [], message: 'converged', at: '' }],
  });

  it('a success: queued, in_progress, success; nothing before a worker starts it', () => {
    expect(deploymentStatuses(run({ status: 'queued', startedAt: null }), false, ctx)).toEqual([]);
    expect(states(run({ stages: [stage('fetch', 'running'), stage('build', 'pending'), stage('push', 'pending'), stage('deploy', 'pending')] }))).toEqual(['queued']);
    expect(states(run({ stages: [stage('fetch', 'succeeded'), stage('build', 'succeeded'), stage('push', 'succeeded'), stage('deploy', 'running')] }))).toEqual(['queued', 'in_progress']);
    const s = deploymentStatuses(succeeded, true, ctx);
    expect(s.map((x) => x.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(s[1]!.description).toBe('Rolling out to www');
    expect(s[2]!.description).toBe('Live on www after 1m20s');
  });

  it('a rollback, a timeout, a build failure: failure with the reason', () => {
    const rolled = run({
      status: 'failed', finishedAt: '2025-01-01T00:01:00.000Z', error: 'deploy: www rolled back: task exited (1)',
      stages: [stage('fetch', 'succeeded'), stage('build', 'succeeded'), stage('push', 'succeeded'), stage('deploy', 'failed', 'www rolled back')],
      deploys: [{ service: 'www', outcome: 'rolled_back', previousImage: 'a', image: 'a', taskErrors: ['exit 1'], message: 'rolled back', at: '' }],
    });
    expect(deploymentStatuses(rolled, true, ctx).map((x) => [x.state, x.description])).toEqual([
      ['queued', 'Run r1: building c0ffee0'],
      ['in_progress', 'Rolling out to www'],
      ['failure', 'Rolled back: deploy: www rolled back: task exited (1)'],
    ]);
    const timedOut = { ...rolled, deploys: [{ ...rolled.deploys[0]!, outcome: 'timed_out' }] };
    expect(deploymentStatuses(timedOut, true, ctx)[2]!.description).toMatch(/^Timed out and rolled back: /);
    const build = run({ status: 'failed', finishedAt: '2025-01-01T00:00:10.000Z', error: 'build: exit code: 3', stages: [stage('fetch', 'succeeded'), stage('build', 'failed', 'exit code: 3'), stage('push', 'skipped'), stage('deploy', 'skipped')] });
    expect(deploymentStatuses(build, true, ctx).map((x) => [x.state, x.description])).toEqual([['queued', 'Run r1: building c0ffee0'], ['failure', 'Failed at build: build: exit code: 3']]);
  });

  it('superseded, cancelled, interrupted: error, saying so; descriptions fit in 140 characters', () => {
    const stopped = [stage('fetch', 'succeeded'), stage('build', 'cancelled'), stage('push', 'cancelled'), stage('deploy', 'cancelled')];
    const sup = run({ status: 'superseded', finishedAt: '2025-01-01T00:00:05.000Z', supersededBy: 'r2', error: 'superseded by r2', stages: stopped });
    expect(deploymentStatuses(sup, true, ctx).map((x) => [x.state, x.description])).toEqual([['queued', 'Run r1: building c0ffee0'], ['error', 'Superseded: superseded by run r2']]);
    const cancelled = run({ status: 'cancelled', finishedAt: '2025-01-01T00:00:05.000Z', error: 'cancelled by admin', stages: stopped });
    expect(deploymentStatuses(cancelled, true, ctx).at(-1)).toEqual({ state: 'error', description: 'Cancelled: cancelled by admin' });
    const lost = run({ status: 'failed', finishedAt: '2025-01-01T00:00:05.000Z', error: 'interrupted: its job is no longer in the queue '.repeat(5), stages: [stage('fetch', 'succeeded'), stage('build', 'cancelled'), stage('push', 'skipped'), stage('deploy', 'skipped')] });
    const last = deploymentStatuses(lost, true, ctx).at(-1)!;
    expect(last.state).toBe('error');
    expect(last.description.length).toBeLessThanOrEqual(140);
    expect(last.description).toMatch(/^Interrupted: interrupted: its job/);
  });

  it('only what was not posted yet, never backwards', () => {
    const desired = deploymentStatuses(succeeded, true, ctx);
    expect(statusesAfter(null, desired).map((s) => s.state)).toEqual(['queued', 'in_progress', 'success']);
    expect(statusesAfter('queued', desired).map((s) => s.state)).toEqual(['in_progress', 'success']);
    expect(statusesAfter('success', desired)).toEqual([]);
    expect(statusesAfter('in_progress', deploymentStatuses(run({}), true, ctx))).toEqual([]); // a retried attempt resets stages
  });

  it('check run and commit status follow the run', () => {
    const running = run({ stages: [stage('fetch', 'succeeded'), stage('build', 'running'), stage('push', 'pending'), stage('deploy', 'pending')] });
    expect(checkRunPlan(running, true, ctx)).toMatchObject({ name: 'deployer/www', status: 'in_progress', conclusion: undefined, title: 'Building the image' });
    expect(commitStatusPlan(running, true)).toEqual({ context: 'deployer/www', state: 'pending', description: 'Building the image' });
    const done = checkRunPlan(succeeded, true, ctx)!;
    expect(done).toMatchObject({ status: 'completed', conclusion: 'success', title: 'Live on www after 1m20s' });
    expect(done.summary).toContain('| deploy | succeeded | 2.5s |');
    expect(done.summary).toContain('| www | succeeded | `b` | converged |');
    expect(done.summary).toContain('[r1](https://deploy.example.org/runs/r1)');
    expect(commitStatusPlan(succeeded, true)).toMatchObject({ state: 'success' });
  });
});

describe('notification events and messages (pure)', () => {
  const base = { stages: [stage('fetch', 'succeeded'), stage('build', 'succeeded'), stage('push', 'succeeded'), stage('deploy', 'succeeded')], finishedAt: '2025-01-01T00:00:42.000Z' };
  it('recovered is the first success after a failure; superseded runs are not announced', () => {
    expect(runEvents(run({}), undefined)).toEqual(['started']);
    expect(runEvents(run({ ...base, status: 'succeeded' }), 'failed')).toEqual(['succeeded', 'recovered']);
    expect(runEvents(run({ ...base, status: 'succeeded' }), 'succeeded')).toEqual(['succeeded']);
    expect(runEvents(run({ ...base, status: 'succeeded' }), undefined)).toEqual(['succeeded']);
    expect(runEvents(run({ ...base, status: 'superseded' }), undefined)).toEqual([]);
    // A start applied together with the end (one batch) is still announced, once, first.
    expect(runEvents(run({ ...base, status: 'succeeded' }), 'failed', true)).toEqual(['started', 'succeeded', 'recovered']);
    expect(runEvents(run({ ...base, status: 'superseded', startedAt: null }), undefined, true)).toEqual([]);
    expect(runEvents(run({ ...base, status: 'failed', deploys: [{ service: 'www', outcome: 'timed_out', previousImage: 'a', image: 'a', taskErrors: [], message: '', at: '' }] }), undefined)).toEqual(['timed_out']);
  });

  it('a run rolled back after edge verification (status rolled_back) is announced and reported as rolled back', () => {
    const rolledBack = run({ ...base, status: 'rolled_back', error: 'deploy: rolled back: not verified at the edge: served by the proxy: old revision 0a1b2c3d4e5f (X-Revision)' });
    expect(runEvents(rolledBack, undefined)).toEqual(['rolled_back']);
    expect(runEvents(run({ ...base, status: 'succeeded' }), 'rolled_back')).toEqual(['succeeded', 'recovered']);
    expect(commitStatusPlan(rolledBack, true)).toMatchObject({ state: 'failure', description: expect.stringMatching(/^Rolled back: deploy: rolled back: not verified at the edge/) });
  });

  it('Slack messages are valid Block Kit naming pipeline, commit, outcome, duration and the run', () => {
    const rolled = run({ ...base, status: 'failed', error: 'deploy: www rolled back: task exited (1)', deploys: [{ service: 'www', outcome: 'rolled_back', previousImage: 'a', image: 'a', taskErrors: [], message: 'rolled back', at: '' }] });
    const msg = slackRunMessage('rolled_back', rolled, { runUrl: ctx.runUrl, pipelineUrl: 'https://d/pipelines/www', repo: 'ocaml/ocaml.org', commitUrl: `https://github.com/ocaml/ocaml.org/commit/${SHA}`, environment: 'production' });
    expect(checkBlockKit(msg)).toEqual([]);
    const text = JSON.stringify(msg);
    for (const part of ['www: rolled back', '`c0ffee0`', `https://github.com/ocaml/ocaml.org/commit/${SHA}`, 'Fix the &lt;header&gt; &amp; footer', 'Ada', '42.0s', ctx.runUrl, 'task exited (1)']) expect(text).toContain(part);
    const drift = slackDriftMessage('www', [{ service: 'www', recorded: 'img@sha256:a', actual: 'img:hand', detectedAt: '' }], { pipelineUrl: 'https://d/pipelines/www' });
    expect(checkBlockKit(drift)).toEqual([]);
    expect(checkBlockKit({ text: 'x', blocks: [{ type: 'header', text: { type: 'mrkdwn', text: 'x' } }, { type: 'banner' }] })).toHaveLength(2);
    const hook = webhookRunPayload('rolled_back', rolled, { runUrl: ctx.runUrl, pipelineUrl: '', repo: 'ocaml/ocaml.org', commitUrl: undefined, environment: 'production' }, '2025-01-01T00:00:00Z');
    expect(hook).toMatchObject({ type: 'run.rolled_back', data: { outcome: 'rolled_back', reason: 'deploy: www rolled back: task exited (1)', commit: { sha: SHA, short: 'c0ffee0' }, run: { id: 'r1', durationSeconds: 42 } } });
  });

  it('Standard Webhooks signatures verify with the reference library', () => {
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const body = JSON.stringify({ type: 'run.succeeded', data: { x: 1 } });
    const ts = Math.floor(Date.now() / 1000);
    const sig = standardSignature(new Secret(secret), 'msg_1', ts, body);
    expect(sig).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': sig })).toEqual({ type: 'run.succeeded', data: { x: 1 } });
    expect(() => new Webhook(secret).verify(`${body} `, { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': sig })).toThrow();
  });
});

describe('GitHub re-run webhooks (routing, pure)', () => {
  const pl = (name: string, branch = 'main') => ({ name, repo: 'Codertocat/Hello-World', branch }) as never;
  it('check_run.rerequested names one of our check runs; check_suite.rerequested the branch', () => {
    const cr = example('check_run', (x) => x.action === 'rerequested');
    cr.repository.full_name = 'Codertocat/Hello-World';
    cr.check_run.name = 'deployer/www';
    const d = routeWebhook('check_run', cr, [pl('www'), pl('api')]);
    expect(d).toMatchObject({ kind: 'rerun', commit: cr.check_run.head_sha, source: 'check_run', by: cr.sender.login });
    expect(d.kind === 'rerun' && d.pipelines.map((p) => p.name)).toEqual(['www']);
    expect(routeWebhook('check_run', { ...cr, check_run: { ...cr.check_run, name: 'ci/test' } }, [pl('www')])).toMatchObject({ kind: 'ignore' });
    expect(routeWebhook('check_run', { ...cr, action: 'completed' }, [pl('www')])).toMatchObject({ kind: 'ignore' });
    const cs = example('check_suite', (x) => x.action === 'rerequested');
    cs.repository.full_name = 'Codertocat/Hello-World';
    cs.check_suite.head_branch = 'main';
    const s = routeWebhook('check_suite', cs, [pl('www'), pl('docs', 'gh-pages')]);
    expect(s.kind === 'rerun' && s.pipelines.map((p) => p.name)).toEqual(['www']);
  });
});

describe('reporting config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'deployer-cfg-'));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const env = { S: 'hook-secret-value', A: 'admin-token-0123456789' };
  const base = (github: string, rest = '', pipeline = '') => `
github:
  webhookSecret: \${S}
${github}
auth:
  adminToken: \${A}
${rest}
pipelines:
  - { name: www, repo: o/r, image: 127.0.0.1:5000/x, services: [s]${pipeline} }
`;
  const issues = (text: string) => {
    try {
      parseConfig(text, join(dir, 'd.yaml'), env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.issues;
      throw err;
    }
  };

  it('reads the contract keys; reports both by default with credentials, nothing without', () => {
    const slackFile = file('slack', 'https://hooks.slack.com/services/T/B/secretpart\n');
    const hookSecret = file('hook', `whsec_${randomBytes(32).toString('base64')}\n`);
    const c = parseConfig(
      base('  token: ghp_abc\n  environment: staging', `notify:\n  - { slack: { webhookUrlFile: ${slackFile} }, on: [failed, rolled_back, timed_out, recovered, drift] }\n  - { webhook: { url: https://hooks.example.org/deploy, secretFile: ${hookSecret} }, on: [all] }\nmetrics: { token: metrics-token-0123456789 }`, ', environment: production, publicUrl: "https://site.example/"'),
      join(dir, 'd.yaml'),
      env,
    );
    expect(c.github).toMatchObject({ apiUrl: 'https://api.github.com', webUrl: 'https://github.com', report: ['deployments', 'checks'], environment: 'staging', app: undefined });
    expect(c.pipelines[0]).toMatchObject({ environment: 'production', publicUrl: 'https://site.example', report: ['deployments', 'checks'] });
    expect(c.notify.map((t) => [t.kind, t.on])).toEqual([
      ['slack', ['failed', 'rolled_back', 'timed_out', 'recovered', 'drift']],
      ['webhook', ['started', 'succeeded', 'failed', 'rolled_back', 'timed_out', 'cancelled', 'recovered', 'drift']],
    ]);
    expect(JSON.stringify(c)).not.toContain('secretpart');
    expect(c.metrics.token?.reveal()).toBe('metrics-token-0123456789');
    expect(parseConfig(base(''), join(dir, 'd.yaml'), env).pipelines[0]!.report).toEqual([]);
    expect(parseConfig(base('  apiUrl: https://ghe.example/api/v3\n  token: t'), join(dir, 'd.yaml'), env).github.webUrl).toBe('https://ghe.example');
  });

  it('bad values are errors naming the key, never echoing a secret', () => {
    const key = file('key.pem', 'not a key');
    const slackFile = file('slack2', 'ftp://secret-host/very-secret-path\n');
    const found = issues(base(`  app: { id: 1, privateKeyFile: ${key} }\n  report: [deployments, comments]`, `notify:\n  - { slack: { webhookUrlFile: ${slackFile} } }\n  - { webhook: { url: https://h/x, secret: plain-secret }, on: [sometimes] }\n  - { webhook: { url: https://h/y, secret: plain-secret } }\nmetrics: { token: short }`));
    const text = JSON.stringify(found);
    expect(found).toEqual(expect.arrayContaining([
      { path: 'github.app.privateKeyFile', message: 'is not a PEM private key' },
      { path: 'notify[0].slack.webhookUrl', message: 'is not an http(s) URL' },
      { path: 'metrics.token', message: 'must be at least 16 characters' },
      expect.objectContaining({ path: 'notify[2].webhook.secret', message: expect.stringMatching(/^must be whsec_/) }),
    ]));
    expect(text).toMatch(/github\.report\[1\]|notify\[1\]\.on/);
    expect(text).not.toContain('very-secret-path');
    expect(text).not.toContain('plain-secret');
    expect(issues(base('  report: [deployments]'))).toEqual([{ path: 'github.report', message: 'needs credentials: github.app (preferred) or github.token' }]);
    expect(issues(base('  token: t', '', ', environment: a, github: { environment: b }'))).toEqual([{ path: 'pipelines[0].environment', message: 'give either environment or github.environment, not both' }]);
  });
});
