import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import type { RunEvent } from '../../src/pipeline/events.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { ADMIN_TOKEN, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort } from '../helpers/process.ts';
import { waitForRun } from '../helpers/runs.ts';
import { disposeQueues } from '../helpers/world.ts';
import { runClient, type ClientCommand } from '../../src/client/commands.ts';

const BIN = resolve(import.meta.dirname, '../../bin/deployer');
const VIEWER = 'cli-viewer-token-0123456789';
const OPS = 'cli-ops-token-0123456789ab';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * bin/deployer's client commands as a real process against a real server (real HTTP,
 * Redis and SQLite; the worker's part is played through the real event stream): output,
 * --json, and the exit codes scripts rely on.
 */
describe('CLI client against a running server', () => {
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let redis: Redis;
  let reporter: StreamReporter;
  let tokenDir: string;
  const at = () => new Date().toISOString();

  /**
   * Runs a client command, `token` through DEPLOYER_TOKEN unless undefined: as a real
   * bin/deployer process with `spawn`, else the same code (runClient) in this process,
   * which saves a Node start per call.
   */
  function cli(args: string[], opts: { token?: string | undefined; timeoutMs?: number; spawn?: boolean } = { token: ADMIN_TOKEN }): Promise<Result> {
    const env: NodeJS.ProcessEnv = { ...process.env, DEPLOYER_SERVER: url };
    delete env.DEPLOYER_TOKEN;
    if (opts.token !== undefined) env.DEPLOYER_TOKEN = opts.token;
    if (!opts.spawn) {
      let stdout = '';
      let stderr = '';
      const [command, ...rest] = args;
      return runClient(command as ClientCommand, rest, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), env }).then((code) => ({ code, stdout, stderr }));
    }
    return new Promise((resolveRun, reject) => {
      const child = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`deployer ${args.join(' ')} did not exit; stderr: ${stderr}`));
      }, opts.timeoutMs ?? 30_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolveRun({ code, stdout, stderr });
      });
    });
  }
  const emit = async (...events: RunEvent[]) => {
    for (const e of events) reporter.emit(e);
    await reporter.flush();
  };
  const push = async (sha: string, subject: string) => (await deliver(url, pushPayload('acme/cli', 'main', sha, subject))).body.runs[0] as string;

  beforeAll(async () => {
    config = testConfig({
      pipelines: [{ name: 'site', repo: 'acme/cli', image: '127.0.0.1:5999/cli', services: ['www'] }],
      authYaml: `  tokens:\n    - { name: watcher, role: viewer, token: ${VIEWER} }\n    - { name: ops, role: operator, token: ${OPS} }\n`,
    });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    url = daemon.url!;
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    reporter = new StreamReporter(redis, config.redisPrefix);
    tokenDir = mkdtempSync(join(tmpdir(), 'cli-token-'));
    writeFileSync(join(tokenDir, 'admin'), `${ADMIN_TOKEN}\n`, { mode: 0o600 });
  });

  afterAll(async () => {
    redis?.disconnect();
    await daemon?.close();
    await disposeQueues(config);
  });

  it('status and runs: a table by default, JSON with --json', async () => {
    const id = await push('1'.repeat(40), 'first change');
    const status = await cli(['status'], { token: ADMIN_TOKEN, spawn: true });
    expect(status).toMatchObject({ code: 0, stderr: '' });
    expect(status.stdout).toMatch(/^PIPELINE\s+SERVING\s+DEPLOYED\s+LAST RUN\s+STATUS\s+NOTES\nsite\s+-\s+-\s+r[a-z0-9]+\s+queued/);
    const json = JSON.parse((await cli(['status', '--json'])).stdout);
    expect(json).toEqual([expect.objectContaining({ name: 'site', lastRun: expect.objectContaining({ id, status: 'queued' }) })]);

    const runs = await cli(['runs', '--limit', '5']);
    expect(runs.code).toBe(0);
    expect(runs.stdout).toContain(id);
    expect(runs.stdout).toContain('first change');
    const runsJson = JSON.parse((await cli(['runs', 'site', '--json'])).stdout);
    expect(runsJson[0]).toMatchObject({ id, pipeline: 'site', trigger: 'push' });
  });

  it('rebuild, cancel, pause, resume and rollback, with the roles they need and exit codes', async () => {
    const rebuilt = await cli(['rebuild', 'site'], { token: OPS, spawn: true });
    expect(rebuilt.code).toBe(0);
    const first = /queued run (r[a-z0-9]+)/.exec(rebuilt.stdout)![1]!;
    expect(daemon.store!.getRun(first)).toMatchObject({ trigger: 'rebuild', requestedBy: 'ops' });
    const second = JSON.parse((await cli(['rebuild', 'site', '--json'], { token: OPS })).stdout);
    expect(second).toEqual({ run: expect.stringMatching(/^r[a-z0-9]+$/) });
    const runId = second.run as string; // the first one is superseded by it (latest wins)

    // Refused by the server: 1. Not allowed: 3. Usage: 2.
    expect((await cli(['rebuild', 'nope'], { token: OPS })).code).toBe(1);
    const viewer = await cli(['rebuild', 'site'], { token: VIEWER, spawn: true });
    expect(viewer.code).toBe(3);
    expect(viewer.stderr).toContain('role operator required');
    expect((await cli(['rebuild', 'site'], { token: 'wrong-token-0123456789' })).code).toBe(3);
    const none = await cli(['rebuild', 'site'], { token: undefined });
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('no token');
    expect((await cli(['rebuild'], { token: ADMIN_TOKEN, spawn: true })).code).toBe(2);
    expect((await cli(['rebuild', 'site', '--bogus'])).code).toBe(2);
    expect((await cli(['rebuild', 'site', '--to', 'x'])).code).toBe(2);

    const cancelled = await cli(['cancel', runId, '--json'], { token: OPS });
    expect(cancelled.code).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toEqual({ run: runId, status: 'cancelled' });
    const again = await cli(['cancel', runId], { token: OPS });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already cancelled');

    // --token-file, and the admin's actions.
    const paused = await cli(['pause', 'site', '--reason', 'release freeze', '--token-file', join(tokenDir, 'admin')], { token: undefined, spawn: true });
    expect(paused).toMatchObject({ code: 0, stdout: 'site paused: release freeze\n' });
    expect(daemon.store!.pauseOf('site')).toMatchObject({ reason: 'release freeze', by: 'admin' });
    expect((await cli(['pause', 'site'], { token: OPS })).code).toBe(3);
    const resumed = await cli(['resume', 'site', '--json']);
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ name: 'site', paused: false });

    // Nothing deployed yet: nothing to roll back to (409 → 1). Then two deployments, as a worker records them.
    expect((await cli(['rollback', 'site'])).code).toBe(1);
    // One after the other, as they would run (a push waiting behind another is superseded by it).
    for (const [sha, d, subject] of [['a'.repeat(40), '1', 'version A'], ['b'.repeat(40), '2', 'version B']] as const) {
      const id = await push(sha, subject);
      const digest = `sha256:${d.repeat(64)}`;
      await emit(
        { type: 'run.started', runId: id, at: at(), worker: 'cli-test', attempt: 1 },
        { type: 'deployed', runId: id, service: 'www', image: `127.0.0.1:5999/cli:latest@${digest}`, digest, commit: sha, at: at() },
        { type: 'run.finished', runId: id, status: 'succeeded', at: at() },
      );
      await waitForRun(url, id, 10_000);
    }
    const history = daemon.store!.deployments('site');
    const older = history.find((h) => h.commit === 'a'.repeat(40))!;
    const rolled = await cli(['rollback', 'site', '--to', older.id, '--json']);
    expect(rolled.code).toBe(0);
    const rollbackRun = daemon.store!.getRun(JSON.parse(rolled.stdout).run)!;
    expect(rollbackRun).toMatchObject({ trigger: 'rollback', commit: 'a'.repeat(40), requestedBy: 'admin' });
    expect((await cli(['rollback', 'site', '--to', 'dnonexistent00000'])).code).toBe(1);
    // A rollback pauses the pipeline; the next test's pushes should not wait.
    expect((await cli(['resume', 'site'])).code).toBe(0);
    const audit = (await (await fetch(`${url}/api/audit?limit=100`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).entries as any[];
    expect(audit.map((e) => `${e.actor} ${e.action} ${e.result}`)).toEqual(expect.arrayContaining(['ops rebuild ok', 'watcher rebuild refused', 'ops cancel ok', 'ops cancel failed', 'admin pause ok', 'admin resume ok', 'admin rollback ok', 'admin rollback failed']));
  });

  it('logs prints the log; logs --follow streams it until the run ends and exits by its outcome', async () => {
    const ok = await push('c'.repeat(40), 'logs ok');
    await emit({ type: 'run.started', runId: ok, at: at(), worker: 'cli-test', attempt: 1 }, { type: 'log', runId: ok, stage: 'build', at: at(), lines: ['#3 [build 1/2] RUN make', '#3 0.1 \u001b[32mok\u001b[0m'] });
    await waitFor(() => daemon.store!.lastLogSeq(ok) > 0);
    const printed = await cli(['logs', ok]);
    expect(printed).toMatchObject({ code: 0, stdout: '#3 [build 1/2] RUN make\n#3 0.1 \u001b[32mok\u001b[0m\n' });
    expect(JSON.parse((await cli(['logs', ok, '--json'])).stdout)).toEqual({ run: ok, log: printed.stdout });

    // Follow: the process keeps printing until the run ends; succeeded → 0.
    const following = cli(['logs', ok, '--follow'], { token: VIEWER, timeoutMs: 30_000, spawn: true });
    await new Promise((r) => setTimeout(r, 300));
    await emit({ type: 'log', runId: ok, stage: 'deploy', at: at(), lines: ['deployed'] }, { type: 'run.finished', runId: ok, status: 'succeeded', at: at() });
    const followed = await following;
    expect(followed, JSON.stringify(followed)).toMatchObject({ code: 0 });
    expect(followed.stdout).toBe('#3 [build 1/2] RUN make\n#3 0.1 \u001b[32mok\u001b[0m\ndeployed\n');
    expect(followed.stderr).toBe(`run ${ok} succeeded\n`);

    // A run that fails: 5, and --json gives one object per line.
    const bad = await push('d'.repeat(40), 'logs fail');
    const followingBad = cli(['logs', bad, '-f', '--json'], { token: ADMIN_TOKEN, timeoutMs: 30_000, spawn: true });
    await new Promise((r) => setTimeout(r, 300));
    await emit({ type: 'run.started', runId: bad, at: at(), worker: 'cli-test', attempt: 1 }, { type: 'log', runId: bad, stage: 'build', at: at(), lines: ['boom'] }, { type: 'run.finished', runId: bad, status: 'failed', at: at(), error: 'build: boom' });
    const failed = await followingBad;
    expect(failed.code).toBe(5);
    const lines = failed.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([{ event: 'log', seq: expect.any(Number), stage: 'build', text: 'boom\n' }, { event: 'end', status: 'failed' }]);

    expect((await cli(['logs', 'rnosuchrun0000'])).code).toBe(1);
    expect((await cli(['logs', 'rnosuchrun0000', '--follow'])).code).toBe(1);
  });

  it('says when the server cannot be reached: 4', async () => {
    const port = await freePort();
    const r = await cli(['status', '--server', `http://127.0.0.1:${port}`], { token: ADMIN_TOKEN, spawn: true });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot reach http://127.0.0.1:${port}`);
    expect((await cli(['status', '--server', 'ftp://x'])).code).toBe(2);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
