import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import type { RunEvent } from '../../src/pipeline/events.ts';
import { eventStreamKey } from '../../src/queue/event-bus.ts';
import { openDatabase } from '../../src/store/db.ts';
import { testConfig, testEnv, AUTH } from '../helpers/config.ts';
import { readStore, rowCount } from '../helpers/db.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { waitUntil } from '../helpers/wait.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'acme/once';
const AT = () => new Date().toISOString();
const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * The store owner killed between applying a batch of worker events and acknowledging
 * it — for real: a `bin/deployer serve` process whose Redis user may not XACK (a Redis
 * ACL), so it applies the batch, fails to acknowledge it, reads it again, and is
 * SIGKILLed in that state. Restarted with a normal user, it reads the same entries once
 * more. Every log chunk, service result and deployment must exist exactly once.
 */
describe('worker events applied exactly once, poison set aside (real processes, Redis, SQLite)', () => {
  let config: Config;
  let admin: Redis;
  let proc: DeployerProcess | undefined;
  let url: string;
  const user = `deployer-test-${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');

  beforeAll(async () => {
    admin = new Redis(REDIS, { maxRetriesPerRequest: null });
    // Everything but XACK: applying works, acknowledging never does.
    await admin.call('ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-xack');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const base = new URL(REDIS);
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      redisUrl: `redis://${user}:${password}@${base.host}`,
      pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/once', services: ['a', 'b'] }],
    });
  });

  afterAll(async () => {
    await proc?.kill('SIGKILL');
    await admin?.call('ACL', 'DELUSER', user).catch(() => undefined);
    if (config) await disposeQueues({ ...config, redisUrl: REDIS });
    admin?.disconnect();
  });

  it('leaves exactly one copy of every log chunk, service result and deployment', async () => {
    proc = await spawnDeployer(['serve', '--no-worker', '--config', config.file], testEnv(), 'listening');
    const res = await deliver(url, pushPayload(REPO, 'main', 'a'.repeat(40)));
    expect(res.status).toBe(202);
    const runId = res.body.runs[0] as string;
    const storeId = readStore(config, (db) => (db.prepare("SELECT value FROM store_meta WHERE key = 'id'").get() as { value: string }).value);
    const stream = eventStreamKey(config.redisPrefix, storeId);

    // Play the worker's part: a whole run, stamped as a worker's reporter stamps it, in
    // one transaction, so the store owner reads it as one batch.
    const result = (service: string) => ({ service, outcome: 'succeeded' as const, previousImage: 'old', image: 'new', taskErrors: [], message: 'converged' });
    const events: RunEvent[] = [
      { type: 'run.started', runId, at: AT(), worker: 'test-worker', attempt: 1 },
      { type: 'stage.started', runId, stage: 'fetch', at: AT() },
      { type: 'log', runId, stage: 'fetch', at: AT(), lines: ['line one'] },
      { type: 'stage.finished', runId, stage: 'fetch', status: 'succeeded', at: AT() },
      { type: 'stage.started', runId, stage: 'deploy', at: AT() },
      { type: 'log', runId, stage: 'deploy', at: AT(), lines: ['line two'] },
      { type: 'image', runId, ref: '127.0.0.1:5999/once:latest@sha256:1', digest: 'sha256:1' },
      { type: 'service.result', runId, at: AT(), result: result('a') },
      { type: 'service.result', runId, at: AT(), result: result('b') },
      { type: 'deployed', runId, service: 'a', image: '127.0.0.1:5999/once:latest@sha256:1', digest: 'sha256:1', commit: 'a'.repeat(40), at: AT() },
      { type: 'deployed', runId, service: 'b', image: '127.0.0.1:5999/once:latest@sha256:1', digest: 'sha256:1', commit: 'a'.repeat(40), at: AT() },
      { type: 'stage.finished', runId, stage: 'deploy', status: 'succeeded', at: AT() },
      { type: 'run.finished', runId, status: 'succeeded', at: AT() },
    ];
    const tx = admin.multi();
    events.forEach((e, i) => tx.xadd(stream, '*', 'e', JSON.stringify({ ...e, exec: 'test-exec', seq: i + 1 })));
    await tx.exec();
    const entries = events.length;

    // Applied…
    await waitUntil('the run is applied', () => rowCount(config, 'runs', "id = ? AND status = 'succeeded'", runId) === 1, 30_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${proc!.output()}`);
    });
    const copies = () => ({
      chunks: rowCount(config, 'log_chunks', 'run_id = ?', runId),
      results: rowCount(config, 'service_deploys', 'run_id = ?', runId),
      deployments: rowCount(config, 'deployments', 'run_id = ?', runId),
    });
    expect(copies()).toEqual({ chunks: 2, results: 2, deployments: 2 });
    // …never acknowledged, and read again by the live process (which skipped it):
    // the exact state of a process that dies between applying and acknowledging.
    await waitUntil('the batch is read again', () => /skipped events applied before/.test(proc!.output()), 30_000);
    const pending = (await admin.xpending(stream, 'store')) as [number, ...unknown[]];
    expect(pending[0]).toBe(entries);
    expect(proc.output()).toMatch(/"msg":"event consumer error; retrying"/);
    expect(await proc.kill('SIGKILL')).toBe(-1);

    // Restarted, now allowed to acknowledge: the same entries are read a third time.
    await admin.call('ACL', 'SETUSER', user, '+xack');
    proc = await spawnDeployer(['serve', '--no-worker', '--config', config.file], testEnv(), 'listening');
    await waitUntil('the entries are acknowledged', async () => ((await admin.xpending(stream, 'store')) as [number])[0] === 0, 30_000);
    // (The log line is written before the acknowledgement, but reaches us on another channel.)
    await waitUntil('the restarted owner says it skipped them', () => /skipped events applied before/.test(proc!.output()), 10_000);
    expect(copies()).toEqual({ chunks: 2, results: 2, deployments: 2 });
    const log = await (await fetch(`${url}/api/runs/${runId}/log`, AUTH)).text();
    expect(log.match(/line one/g)).toHaveLength(1);
    expect(log.match(/line two/g)).toHaveLength(1);
    const run = await (await fetch(`${url}/api/runs/${runId}`, AUTH)).json();
    expect(run).toMatchObject({ status: 'succeeded', setAsideEvents: 0 });
    expect(run.deploys).toHaveLength(2);
    expect(await (await fetch(`${url}/api/pipelines/site/deployments`, AUTH)).json()).toHaveLength(2);
    expect(await proc.kill('SIGTERM')).toBe(0);
  });

  it('a poison event (its application fails every time) is set aside after 3 tries; the events behind it are applied', async () => {
    const cfg = testConfig({ logLevel: 'info', listen: `127.0.0.1:${await freePort()}`, pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/once', services: [] }] });
    // A real failure inside SQLite for one event only, as a corrupt page or a bug would
    // cause: the store is made first, with a trigger that refuses that log line.
    const db = openDatabase(join(cfg.dataDir, 'deployer.db'));
    db.exec("CREATE TRIGGER poison BEFORE INSERT ON log_chunks WHEN NEW.text LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END");
    db.close();
    const base = `http://${cfg.listen.host}:${cfg.listen.port}`;
    const p = await spawnDeployer(['serve', '--no-worker', '--config', cfg.file], testEnv(), 'listening');
    try {
      const runId = (await deliver(base, pushPayload(REPO, 'main', 'b'.repeat(40)))).body.runs[0] as string;
      const storeId = readStore(cfg, (d) => (d.prepare("SELECT value FROM store_meta WHERE key = 'id'").get() as { value: string }).value);
      const events: RunEvent[] = [
        { type: 'run.started', runId, at: AT(), worker: 'test-worker', attempt: 1 },
        { type: 'log', runId, stage: 'build', at: AT(), lines: ['before'] },
        { type: 'log', runId, stage: 'build', at: AT(), lines: ['POISON'] },
        { type: 'log', runId, stage: 'build', at: AT(), lines: ['after'] },
        { type: 'run.finished', runId, status: 'failed', at: AT(), error: 'build: failed' },
      ];
      const tx = admin.multi();
      events.forEach((e, i) => tx.xadd(eventStreamKey(cfg.redisPrefix, storeId), '*', 'e', JSON.stringify({ ...e, exec: 'test-exec', seq: i + 1 })));
      await tx.exec();
      await waitUntil('the events after the poison are applied', async () => (await (await fetch(`${base}/api/runs/${runId}`, AUTH)).json()).status === 'failed', 30_000);
      expect(await (await fetch(`${base}/api/runs/${runId}`, AUTH)).json()).toMatchObject({ status: 'failed', error: 'build: failed', setAsideEvents: 1 });
      const log = await (await fetch(`${base}/api/runs/${runId}/log`, AUTH)).text();
      expect(log).toMatch(/^before\n\[deployer\] a report about this run could not be applied and was set aside \(stream entry [\d-]+\): disk I\/O error\nafter\n$/);
      expect(p.output().match(/"msg":"event could not be applied; trying again"/g)).toHaveLength(2);
      expect(p.output()).toMatch(/"attempts":3,"error":"disk I\/O error","err":\{"type":"Error","message":"disk I\/O error","stack":.*"msg":"event set aside: it could not be applied"/);
      expect(rowCount(cfg, 'set_aside_events', 'run_id = ?', runId)).toBe(1);
    } finally {
      await p.kill('SIGTERM');
      await disposeQueues(cfg);
    }
  });
});
