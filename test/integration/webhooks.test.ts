import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { queueNamesOf } from '../../src/queue/run-queue.ts';
import { rowCount } from '../helpers/db.ts';
import { ADMIN_TOKEN, testConfig, AUTH } from '../helpers/config.ts';
import { deliver, example, pushPayload } from '../helpers/github.ts';
import { disposeQueues } from '../helpers/world.ts';

const REPO = 'Codertocat/Hello-World';
const sha = (c: string) => c.repeat(40);

describe('POST /webhooks/github through the real app, real HTTP and real Redis', () => {
  let config: Config;
  let daemon: Daemon;
  let url: string;
  let redis: Redis;
  const runCount = () => rowCount(config, 'runs');
  const jobCount = async (pipeline: string) => {
    const q = new Queue(queueNamesOf(config, pipeline).run, { connection: redis, prefix: config.redisPrefix });
    const n = await q.getJobCountByTypes('waiting', 'active', 'delayed', 'prioritized');
    await q.close();
    return n;
  };

  beforeAll(async () => {
    config = testConfig({
      pipelines: [
        { name: 'site', repo: REPO, branch: 'main', image: '127.0.0.1:5999/site', services: ['infra_www'] },
        { name: 'site-mirror', repo: REPO, branch: 'main', image: '127.0.0.1:5999/mirror', services: [] },
        { name: 'other', repo: 'ocaml/ocaml.org', branch: 'main', image: '127.0.0.1:5999/other', services: [] },
      ],
    });
    daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    url = daemon.url!;
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  });

  afterAll(async () => {
    for (const p of config.pipelines) {
      const q = new Queue(queueNamesOf(config, p.name).run, { connection: redis, prefix: config.redisPrefix });
      await q.obliterate({ force: true });
      await q.close();
    }
    await redis.del(`${config.redisPrefix}:events`);
    redis.disconnect();
    await daemon.close();
  });

  it('answers ping with 200 and creates nothing', async () => {
    const before = runCount();
    const res = await deliver(url, example('ping'), { event: 'ping' });
    expect(res.status).toBe(200);
    expect(runCount()).toBe(before);
  });

  it('turns a push to the deploy branch into one queued run per matching pipeline', async () => {
    const res = await deliver(url, pushPayload(REPO, 'main', sha('a'), 'Add a page'));
    expect(res.status).toBe(202);
    expect(res.body.runs).toHaveLength(2);
    const runs = res.body.runs.map((id: string) => daemon.store!.getRun(id)!);
    expect(runs.map((r: { pipeline: string }) => r.pipeline).sort()).toEqual(['site', 'site-mirror']);
    for (const r of runs) expect(r).toMatchObject({ status: 'queued', commit: sha('a'), trigger: 'push', subject: 'Add a page' });
    expect(await jobCount('site')).toBe(1);
    expect(await jobCount('site-mirror')).toBe(1);

    const api = await (await fetch(`${url}/api/runs/${res.body.runs[0]}`, AUTH)).json();
    for (const key of ['id', 'pipeline', 'commit', 'status', 'trigger', 'stages', 'image', 'createdAt', 'startedAt', 'finishedAt', 'error']) {
      expect(api, key).toHaveProperty(key);
    }
    expect(api.stages.map((s: { name: string }) => s.name)).toEqual(['fetch', 'build', 'push', 'deploy']);
  });

  it('answers a redelivery with the same run ids and creates no new run', async () => {
    const delivery = crypto.randomUUID();
    const first = await deliver(url, pushPayload(REPO, 'main', sha('b')), { delivery });
    const before = runCount();
    const again = await deliver(url, pushPayload(REPO, 'main', sha('b')), { delivery });
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(runCount()).toBe(before);
  });

  it('ignores other events, branches, repositories, tag pushes and deletions with a reason', async () => {
    const before = runCount();
    const cases: [string, unknown, RegExp][] = [
      ['issues', example('issues'), /event "issues" is not used/],
      ['push', pushPayload(REPO, 'feature', sha('c')), /no pipeline for branch feature/],
      ['push', pushPayload('someone/else', 'main', sha('c')), /no pipeline for repository someone\/else/],
      ['push', { ...example('push', (p) => String(p.ref).startsWith('refs/tags/') && !p.deleted) }, /tag push/],
      ['push', { ...pushPayload(REPO, 'main', '0'.repeat(40)), deleted: true }, /branch deletion/],
    ];
    for (const [event, payload, reason] of cases) {
      const res = await deliver(url, payload, { event });
      expect(res.status, String(reason)).toBe(202);
      expect(res.body.ignored).toMatch(reason);
    }
    expect(runCount()).toBe(before);
  });

  it('rejects missing or wrong signatures with 401, before parsing anything', async () => {
    const before = runCount();
    const payload = pushPayload(REPO, 'main', sha('d'));
    expect((await deliver(url, payload, { headers: { 'x-hub-signature-256': undefined } })).status).toBe(401);
    expect((await deliver(url, payload, { secret: 'not-the-secret' })).status).toBe(401);
    expect((await deliver(url, payload, { headers: { 'x-hub-signature-256': 'sha256=zz' } })).status).toBe(401);
    // Signed over different bytes than sent (re-serialised JSON): refused.
    const res = await fetch(`${url}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': crypto.randomUUID(),
        'x-hub-signature-256': (await import('../helpers/github.ts')).sign(JSON.stringify(payload, null, 2), (await import('../helpers/config.ts')).WEBHOOK_SECRET),
      },
      body: JSON.stringify(payload),
    });
    expect(res.status).toBe(401);
    expect(runCount()).toBe(before);
  });

  it('rejects missing headers and malformed JSON with 400', async () => {
    const before = runCount();
    const payload = pushPayload(REPO, 'main', sha('e'));
    expect((await deliver(url, payload, { headers: { 'x-github-event': undefined } })).status).toBe(400);
    expect((await deliver(url, payload, { headers: { 'x-github-delivery': undefined } })).status).toBe(400);
    const bad = await deliver(url, null, { raw: '{"ref": "refs/heads/main", ' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/JSON/);
    expect(runCount()).toBe(before);
  });

  it('rejects a body over the limit with 413', async () => {
    const huge = JSON.stringify({ ...pushPayload(REPO, 'main', sha('f')), padding: 'x'.repeat(26 * 1024 * 1024) });
    const res = await deliver(url, null, { raw: huge });
    expect(res.status).toBe(413);
  });

  it('accepts form-encoded deliveries, verified over the raw form body', async () => {
    const payload = pushPayload(REPO, 'main', sha('9'));
    const form = `payload=${encodeURIComponent(JSON.stringify(payload))}`;
    const res = await deliver(url, null, { raw: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(202);
    expect(res.body.runs).toHaveLength(2);
  });

  it('lists pipelines with lastRun and deployed', async () => {
    const list = await (await fetch(`${url}/api/pipelines`, AUTH)).json();
    expect(list.map((p: { name: string }) => p.name)).toEqual(['site', 'site-mirror', 'other']);
    const site = list[0];
    expect(Object.keys(site)).toEqual(expect.arrayContaining(['name', 'repo', 'branch', 'services', 'lastRun', 'deployed']));
    expect(site.lastRun.status).toBe('queued');
    expect(site.deployed).toBeNull();
    expect(list[2].lastRun).toBeNull();
    const page = await (await fetch(`${url}/api/pipelines/site/runs?limit=2`, AUTH)).json();
    expect(page.runs).toHaveLength(2);
    expect(page.next).not.toBeNull();
    const rest = await (await fetch(`${url}/api/pipelines/site/runs?limit=50&before=${page.next}`, AUTH)).json();
    expect(rest.runs.length).toBeGreaterThan(0);
    expect(rest.runs.every((r: { id: string }) => !page.runs.some((p: { id: string }) => p.id === r.id))).toBe(true);
    expect((await fetch(`${url}/api/pipelines/nope/runs`, AUTH)).status).toBe(404);
    expect((await fetch(`${url}/api/pipelines/site/runs?limit=0`, AUTH)).status).toBe(400);
    expect((await fetch(`${url}/api/runs/r0000000000nope`, AUTH)).status).toBe(404);
  });

  it('requires the admin token for rebuild and queues a run with trigger rebuild', async () => {
    const path = `${url}/api/pipelines/site/rebuild`;
    expect((await fetch(path, { method: 'POST' })).status).toBe(401);
    expect((await fetch(path, { method: 'POST', headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    const res = await fetch(path, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(202);
    const { run } = await res.json();
    expect(daemon.store!.getRun(run)).toMatchObject({ trigger: 'rebuild', status: 'queued', commit: null });
    expect((await fetch(`${url}/api/pipelines/nope/rebuild`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(404);
  });

  it('serves the HTML pages', async () => {
    const home = await fetch(`${url}/`, AUTH);
    expect(home.status).toBe(200);
    const html = await home.text();
    expect(html).toContain('site');
    expect(html).not.toContain(ADMIN_TOKEN);
    const run = daemon.store!.lastRun('site')!;
    const page = await fetch(`${url}/runs/${run.id}`, AUTH);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Rebuild');
  });

  it('reports health of Redis, store and Docker', async () => {
    const res = await fetch(`${url}/healthz`);
    const body = await res.json();
    expect(body.checks).toEqual({ redis: 'ok', store: 'ok', docker: 'ok' });
    expect(res.status).toBe(200);
  });
});

describe('right after start-up', () => {
  // The producer connection has no offline queue (webhooks must fail fast when Redis is
  // down), so a command before it is ready fails at once: before the daemon waited for
  // it, every one of 10 fresh starts answered this first push 503 and /healthz "redis".
  it('accepts the very first push and reports Redis healthy', async () => {
    const config = testConfig({ pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    const daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    try {
      const [res, health] = await Promise.all([
        deliver(daemon.url!, pushPayload(REPO, 'main', sha('f'))),
        fetch(`${daemon.url}/healthz`).then(async (r) => (await r.json()) as { failing: string[] }),
      ]);
      expect(res.status).toBe(202);
      expect(health.failing).not.toContain('redis');
    } finally {
      await daemon.close();
      await disposeQueues(config);
    }
  });
});

describe('when Redis is unreachable', () => {
  it('answers webhooks with 503 (so GitHub redelivers), records nothing, and /healthz names redis', async () => {
    const config = testConfig({ redisUrl: 'redis://127.0.0.1:1', pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    const daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    try {
      const res = await deliver(daemon.url!, pushPayload(REPO, 'main', sha('a')));
      expect(res.status).toBe(503);
      const rebuild = await fetch(`${daemon.url}/api/pipelines/site/rebuild`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(rebuild.status).toBe(503);
      expect((await rebuild.json()).error).toBe('queue unavailable; retry later');
      expect(rowCount(config, 'runs')).toBe(0);
      expect(rowCount(config, 'deliveries')).toBe(0);
      const health = await fetch(`${daemon.url}/healthz`);
      expect(health.status).toBe(503);
      // Docker's ping may also time out (2 s) on a loaded machine: only pin what is down.
      const redisDown = (await health.json()).failing;
      expect(redisDown).toContain('redis');
      expect(redisDown).not.toContain('store');
    } finally {
      await daemon.close();
    }
  });
});

describe('when the store cannot record', () => {
  it('answers 503 (so GitHub redelivers) instead of accepting a push it would lose', async () => {
    const config = testConfig({ pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }] });
    const daemon = await startDaemon(config, { http: true, worker: false, port: 0 });
    try {
      daemon.store!.close(); // the database is gone (disk failure, file removed under us)
      const res = await deliver(daemon.url!, pushPayload(REPO, 'main', sha('a')));
      expect(res.status).toBe(503);
      expect(res.body.error).toMatch(/could not record/);
      const health = await fetch(`${daemon.url}/healthz`);
      expect(health.status).toBe(503);
      const storeDown = (await health.json()).failing;
      expect(storeDown).toContain('store');
      expect(storeDown).not.toContain('redis');
    } finally {
      await daemon.close().catch(() => undefined);
      await disposeQueues(config);
    }
  });
});
