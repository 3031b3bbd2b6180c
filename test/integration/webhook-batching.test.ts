import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { ControlPublisher } from '../../src/queue/control.ts';
import { queueNamesOf, RunQueues } from '../../src/queue/run-queue.ts';
import { rowCount } from '../helpers/db.ts';
import { Scheduler, type PushSubmission } from '../../src/queue/scheduler.ts';
import { openDatabase } from '../../src/store/db.ts';
import { RunStore, type RunView } from '../../src/store/run-store.ts';
import { ADMIN_TOKEN, testConfig, WEBHOOK_SECRET } from '../helpers/config.ts';
import { deliver, pushPayload, sign } from '../helpers/github.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'acme/batched';
const PAUSED_REPO = 'acme/paused';
const sha = (i: number) => i.toString(16).padStart(40, '0');
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Jobs of a pipeline's queue by state (no worker runs here, so they stay put). */
async function jobIds(config: Config, redis: Redis, pipeline: string, state: 'waiting' | 'active' | 'delayed'): Promise<string[]> {
  const q = new Queue(queueNamesOf(config, pipeline).run, { connection: redis, prefix: config.redisPrefix });
  try {
    return (await q.getJobs([state])).map((j) => j.id!).sort();
  } finally {
    await q.close();
  }
}

/**
 * Two signed deliveries written to one socket in a single write (HTTP/1.1 pipelining):
 * the server parses both in the same event-loop turn, so they land in one ingest batch.
 */
async function pipelined(baseUrl: string, bodies: { body: string; delivery: string }[]): Promise<{ status: number; body: any }[]> {
  const { hostname, port } = new URL(baseUrl);
  const requests = bodies.map(({ body, delivery }) =>
    [
      'POST /webhooks/github HTTP/1.1',
      `Host: ${hostname}:${port}`,
      'Content-Type: application/json',
      'X-GitHub-Event: push',
      `X-GitHub-Delivery: ${delivery}`,
      `X-Hub-Signature-256: ${sign(body, WEBHOOK_SECRET)}`,
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n'),
  );
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let raw = '';
    const responses = () => {
      const out: { status: number; body: any }[] = [];
      let rest = raw;
      while (rest.length) {
        const head = rest.indexOf('\r\n\r\n');
        if (head < 0) return undefined;
        const headers = rest.slice(0, head);
        const length = Number(/content-length: (\d+)/i.exec(headers)?.[1] ?? NaN);
        const body = rest.slice(head + 4, head + 4 + length);
        if (Number.isNaN(length) || body.length < length) return undefined;
        out.push({ status: Number(headers.split(' ')[1]), body: JSON.parse(body) });
        rest = rest.slice(head + 4 + length);
      }
      return out;
    };
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('data', (chunk: string) => {
      raw += chunk;
      const done = responses();
      if (done && done.length === bodies.length) {
        socket.destroy();
        resolve(done);
      }
    });
    socket.write(requests.join(''));
  });
}

describe('webhook ingest batches concurrent pushes (real HTTP, Redis, SQLite)', () => {
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let redis: Redis;
  const run = (id: string) => daemon.store!.getRun(id)!;
  const recorded = (delivery: string) => daemon.store!.findDelivery(delivery);

  beforeAll(async () => {
    config = testConfig({
      pipelines: [
        { name: 'site', repo: REPO, branch: 'main', image: '127.0.0.1:5999/site', services: [] },
        { name: 'site-mirror', repo: REPO, branch: 'main', image: '127.0.0.1:5999/mirror', services: [] },
        { name: 'held', repo: PAUSED_REPO, branch: 'main', image: '127.0.0.1:5999/held', services: [] },
      ],
    });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    url = daemon.url!;
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  });

  afterAll(async () => {
    redis?.disconnect();
    await daemon?.close();
    if (config) await disposeQueues(config);
  });

  it('50 concurrent pushes: all 202 and recorded; one waiting job per pipeline; the rest superseded by the newest', async () => {
    const pushes = Array.from({ length: 50 }, (_, i) => ({ delivery: randomUUID(), commit: sha(1000 + i) }));
    const answers = await Promise.all(pushes.map((p) => deliver(url, pushPayload(REPO, 'main', p.commit), { delivery: p.delivery })));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(202));
    pushes.forEach((p, i) => {
      expect(answers[i]!.body.runs).toHaveLength(2);
      // Recorded before the 202, with the very runs answered.
      expect(recorded(p.delivery)).toEqual(answers[i]!.body);
    });

    for (const [pipeline, index] of [['site', 0], ['site-mirror', 1]] as const) {
      const runs = answers.map((a) => run(a.body.runs[index]));
      expect(new Set(runs.map((r) => r.pipeline))).toEqual(new Set([pipeline]));
      const queued = runs.filter((r) => r.status === 'queued');
      expect(queued).toHaveLength(1);
      const winner = queued[0]!;
      expect(await jobIds(config, redis, pipeline, 'waiting')).toEqual([winner.id]);
      const superseded = runs.filter((r) => r !== winner);
      for (const r of superseded) {
        expect(r).toMatchObject({ status: 'superseded', startedAt: null });
        expect(r.finishedAt).not.toBeNull();
        expect(r.stages.map((s) => s.status)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
      }
      // Every link leads on to the run left waiting.
      const byId = new Map<string, RunView>(runs.map((r) => [r.id, r]));
      for (const r of superseded) {
        let cursor: RunView | undefined = r;
        for (let hops = 0; cursor && cursor.supersededBy && hops < 60; hops++) cursor = byId.get(cursor.supersededBy);
        expect(cursor?.id).toBe(winner.id);
      }
      // Batched: some run replaced several pushes at once (one at a time, each would
      // replace only the one before it).
      expect(new Set(superseded.map((r) => r.supersededBy)).size).toBeLessThan(superseded.length);
    }
  });

  it('a delivery sent twice in one batch creates one set of runs and gets the same answer twice', async () => {
    const delivery = randomUUID();
    const body = JSON.stringify(pushPayload(REPO, 'main', sha(2000)));
    const runsBefore = rowCount(config, 'runs');
    const [first, second] = await pipelined(url, [
      { body, delivery },
      { body, delivery },
    ]);
    expect(first!.status).toBe(202);
    expect(second).toEqual(first);
    expect(first!.body.runs).toHaveLength(2);
    expect(recorded(delivery)).toEqual(first!.body);
    const runsAfter = rowCount(config, 'runs');
    expect(runsAfter - runsBefore).toBe(2);
    // And GitHub's later redelivery gets it once more.
    const again = await deliver(url, JSON.parse(body), { delivery });
    expect(again).toEqual(first);
  });

  it('a paused pipeline: concurrent pushes are accepted and held without a job; only the newest stays waiting', async () => {
    const pause = await fetch(`${url}/api/pipelines/held/pause`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{"reason":"test"}' });
    expect(pause.status).toBe(200);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => deliver(url, pushPayload(PAUSED_REPO, 'main', sha(3000 + i)))));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(202));
    const runs = answers.map((a) => run(a.body.runs[0]));
    const waiting = runs.filter((r) => r.status === 'queued');
    expect(waiting).toHaveLength(1);
    expect(runs.filter((r) => r.status === 'superseded')).toHaveLength(19);
    expect(await jobIds(config, redis, 'held', 'waiting')).toEqual([]);

    const resumed = await (await fetch(`${url}/api/pipelines/held/resume`, { method: 'POST', headers: admin })).json();
    expect(resumed.resumedRun).toBe(waiting[0]!.id);
    expect(await jobIds(config, redis, 'held', 'waiting')).toEqual([waiting[0]!.id]);
  });
});

describe('webhook ingest when Redis is unreachable', () => {
  it('answers every request of a concurrent batch 503 and keeps nothing; a delivery recorded before keeps its answer', async () => {
    const config = testConfig({ redisUrl: 'redis://127.0.0.1:1', pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    const daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    try {
      const store = daemon.store!;
      const count = (table: string) => rowCount(config, table);
      // Accepted earlier, while Redis was up.
      const [old] = store.createRuns([{ pipeline: 'site', trigger: 'push', commit: sha(1), deliveryId: 'earlier-delivery' }], { id: 'earlier-delivery', event: 'push' });
      const ids = [...Array.from({ length: 20 }, () => randomUUID()), 'earlier-delivery'];
      ids.splice(5, 0, ids[3]!); // the same new delivery twice
      const answers = await Promise.all(ids.map((delivery, i) => deliver(daemon.url!, pushPayload(REPO, 'main', sha(4000 + i)), { delivery })));
      expect(answers.at(-1)).toEqual({ status: 202, body: { runs: [old!.id] } });
      for (const a of answers.slice(0, -1)) expect(a).toEqual({ status: 503, body: { error: 'queue unavailable; retry later' } });
      expect(count('runs')).toBe(1);
      expect(count('deliveries')).toBe(1);
      expect(count('stages')).toBe(4);
    } finally {
      await daemon.close();
    }
  });
});

describe('Scheduler.submitPush batches what arrives in one turn (real SQLite and Redis)', () => {
  let config: Config;
  let store: RunStore;
  let redis: Redis;
  let queues: RunQueues;
  let scheduler: Scheduler;
  const push = (delivery: string, commit: string): PushSubmission => ({
    delivery: { id: delivery, event: 'push' },
    runs: [{ pipeline: 'site', trigger: 'push', commit, deliveryId: delivery }],
  });

  beforeAll(() => {
    config = testConfig({ pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    store = new RunStore(openDatabase(join(config.dataDir, 'deployer.db')));
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
    queues = new RunQueues(redis, config);
    scheduler = new Scheduler({ store, queues, control: new ControlPublisher(redis, config.redisPrefix), config, log: createLogger('silent') });
  });

  afterAll(async () => {
    await queues?.close();
    redis?.disconnect();
    store?.close();
    if (config) await disposeQueues(config);
  });

  it('one transaction and one job for the batch: a repeated id gets the first answer, the last push wins', async () => {
    const [a, aAgain, b] = await Promise.all([push('d-a', sha(1)), push('d-a', sha(99)), push('d-b', sha(2))].map((p) => scheduler.submitPush(p)));
    expect(a!.redelivery).toBe(false);
    expect(aAgain).toEqual({ outcome: a!.outcome, redelivery: true });
    expect(b!.redelivery).toBe(false);
    const runA = store.getRun((a!.outcome as { runs: string[] }).runs[0]!)!;
    const runB = store.getRun((b!.outcome as { runs: string[] }).runs[0]!)!;
    expect(runA).toMatchObject({ status: 'superseded', supersededBy: runB.id, error: `superseded by ${runB.id}`, commit: sha(1) });
    expect(runB).toMatchObject({ status: 'queued', commit: sha(2) });
    expect(rowCount(config, 'runs')).toBe(2);
    expect(await jobIds(config, redis, 'site', 'waiting')).toEqual([runB.id]);

    // The next batch supersedes the waiting run through the queue, as a single push did.
    const c = await scheduler.submitPush(push('d-c', sha(3)));
    const runC = (c.outcome as { runs: string[] }).runs[0]!;
    expect(store.getRun(runB.id)).toMatchObject({ status: 'superseded', supersededBy: runC });
    expect(await jobIds(config, redis, 'site', 'waiting')).toEqual([runC]);
    // A later redelivery of a recorded id creates nothing.
    expect(await scheduler.submitPush(push('d-a', sha(1)))).toEqual({ outcome: a!.outcome, redelivery: true });
  });
});
