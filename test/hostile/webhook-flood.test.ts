// Issue #11 items 1 and 7, against a real `bin/deployer serve` process (real HTTP,
// Redis, SQLite): unauthenticated webhook bodies cannot exhaust memory or hold the
// server, and the signature covers the raw bytes received.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { testConfig, testEnv, WEBHOOK_SECRET } from '../helpers/config.ts';
import { deliver, example, pushPayload, sign } from '../helpers/github.ts';
import { freePort, spawnDeployer, type DeployerProcess } from '../helpers/process.ts';
import { disposeQueues } from '../helpers/world.ts';
import { appendToConfigFile, chunk, MB, mb, RawRequest, rssOf, sampleRss, waitFor, webhookHead } from './helpers.ts';

const REPO = 'Codertocat/Hello-World';
const sha = (c: string) => c.repeat(40);
/** The documented limits (README, HTTP API): GitHub's payload cap, and what unverified bodies may hold at once. */
const BODY_LIMIT = 25 * MB;
const BODY_BUDGET = 64 * MB;
const MAX_BODIES = 32;
/** Short on purpose (the defaults are 30 s and 10 s): the test waits for them. */
const REQUEST_TIMEOUT_MS = 4000;
const HEADERS_TIMEOUT_MS = 2000;

describe('webhook intake against hostile clients (a real `bin/deployer serve`)', () => {
  let config: Config;
  let daemon: DeployerProcess;
  let port: number;
  let url: string;

  beforeAll(async () => {
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    config = testConfig({
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      pipelines: [{ name: 'site', repo: REPO, image: '127.0.0.1:5999/site' }],
    });
    appendToConfigFile(config, `http:\n  requestTimeout: ${REQUEST_TIMEOUT_MS}ms\n  headersTimeout: ${HEADERS_TIMEOUT_MS}ms\n`);
    // No worker: only the HTTP side is under test, and accepted runs need not build.
    daemon = await spawnDeployer(['serve', '--no-worker', '--config', config.file], testEnv(), 'listening');
  });

  afterAll(async () => {
    await daemon?.kill('SIGTERM');
    if (config) await disposeQueues(config);
  });

  it('refuses missing or malformed headers and over-long bodies before reading the body', async () => {
    const cases: [string, Parameters<typeof webhookHead>[1], number][] = [
      ['no X-GitHub-Event', { headers: { 'x-github-event': null } }, 400],
      ['malformed X-GitHub-Event', { headers: { 'x-github-event': 'push\u0001' } }, 400],
      ['no X-GitHub-Delivery', { headers: { 'x-github-delivery': null } }, 400],
      ['malformed X-GitHub-Delivery', { headers: { 'x-github-delivery': 'a b' } }, 400],
      ['no signature', { headers: { 'x-hub-signature-256': null } }, 401],
      ['malformed signature', { headers: { 'x-hub-signature-256': 'sha256=zz' } }, 401],
      ['SHA-1 signature', { headers: { 'x-hub-signature-256': `sha1=${'ab'.repeat(20)}` } }, 401],
      ['Content-Length over 25 MiB', { length: BODY_LIMIT + 1 }, 413],
    ];
    for (const [what, opts, status] of cases) {
      // Announces 24 MB (or more) and sends none of it: only an answer from the headers can come.
      const req = new RawRequest(port, webhookHead(port, { length: 24_000_000, ...opts }));
      try {
        const res = await waitFor(`an answer to a request with ${what}`, () => req.response(), 10_000, 20);
        expect(res.status, what).toBe(status);
        // The unread body is not waited for: the connection is closed after the answer.
        await waitFor(`the server to close after refusing ${what}`, () => (req.ended ? true : undefined), 10_000, 20);
      } finally {
        req.close();
      }
    }
  });

  it('cuts a chunked body at 25 MiB with 413', async () => {
    const req = new RawRequest(port, webhookHead(port, { length: 'chunked' }));
    const piece = chunk(Buffer.alloc(MB, 0x61));
    let sent = 0;
    try {
      while (sent < BODY_LIMIT + 8 * MB && (await req.write(piece))) sent += MB;
      const outcome = await req.outcome;
      // The server stopped reading near the limit and closed; its 413 arrives unless the
      // close overtook it (a reset, as the client was still sending).
      expect(sent).toBeLessThan(BODY_LIMIT + 8 * MB);
      if (outcome.status !== undefined) expect(outcome.status).toBe(413);
      else expect(['EPIPE', 'ECONNRESET']).toContain(outcome.error);
    } finally {
      req.close();
    }
  });

  it('answers 503 with Retry-After, before reading, when unverified bodies would exceed what may be held', async () => {
    // Two announced 24 MB bodies fit in the budget; a third would not.
    const held = [0, 1].map(() => new RawRequest(port, webhookHead(port, { length: 24 * MB })));
    try {
      // Wait until both are admitted (their bodies are being read: no answer yet).
      await new Promise((r) => setTimeout(r, 300));
      for (const h of held) expect(h.response(), 'an admitted body is being waited for').toBeUndefined();
      const third = new RawRequest(port, webhookHead(port, { length: 24 * MB }));
      const refused = await waitFor('an answer to the over-budget body', () => third.response(), 10_000, 20);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      third.close();
    } finally {
      for (const h of held) h.close();
    }
    // Their share is given back when they go: a real delivery is accepted again.
    await waitFor('a ping to be accepted again', async () => ((await deliver(url, example('ping'), { event: 'ping' })).status === 200 ? true : undefined), 10_000);

    // The count is capped too: many tiny bodies that never finish.
    const slow = Array.from({ length: MAX_BODIES }, () => new RawRequest(port, webhookHead(port, { length: 1000 })));
    try {
      for (const s of slow) await s.write('{');
      await new Promise((r) => setTimeout(r, 300));
      const extra = new RawRequest(port, webhookHead(port, { length: 1000 }));
      const res = await waitFor('an answer to one body too many', () => extra.response(), 10_000, 20);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBeDefined();
      extra.close();
    } finally {
      for (const s of slow) s.close();
    }
    await waitFor('a ping to be accepted again', async () => ((await deliver(url, example('ping'), { event: 'ping' })).status === 200 ? true : undefined), 10_000);
  });

  it('cuts off a client that dribbles its headers', async () => {
    const req = new RawRequest(port, `POST /webhooks/github HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n`);
    try {
      const stopAt = Date.now() + HEADERS_TIMEOUT_MS + 15_000;
      while (!req.ended && Date.now() < stopAt) {
        await req.write('x');
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(req.ended, 'the server closed the connection').toBe(true);
      const { endedAfterMs } = await req.outcome;
      expect(endedAfterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    } finally {
      req.close();
    }
  });

  it('40 clients dribbling 24 MB bodies with garbage signatures: RSS stays bounded, /healthz answers, every dribbler is cut off', async () => {
    const pid = daemon.proc.pid!;
    // Warm up, so the baseline includes what answering deliveries normally costs.
    for (let i = 0; i < 5; i++) expect((await deliver(url, example('ping'), { event: 'ping' })).status).toBe(200);
    const baseline = rssOf(pid);
    const rss = sampleRss(pid, 50);

    let attacking = true;
    const health: { ms: number; status: number }[] = [];
    const healthLoop = (async () => {
      while (attacking) {
        const t0 = Date.now();
        // A /healthz that does not answer within 5 s fails the test (the fetch throws).
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
        await res.arrayBuffer();
        health.push({ ms: Date.now() - t0, status: res.status });
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const TOTAL = 24_000_000;
    const FAST = 20_000_000; // most of the body at once, then one small piece every 200 ms
    const giveUpAt = Date.now() + REQUEST_TIMEOUT_MS + 40_000;
    const dribble = async (i: number) => {
      const chunked = i % 2 === 1;
      const req = new RawRequest(port, webhookHead(port, { length: chunked ? 'chunked' : TOTAL }));
      const piece = Buffer.alloc(64 * 1024, 0x61);
      const wire = chunked ? chunk(piece) : piece;
      let sent = 0;
      while (sent < FAST && Date.now() < giveUpAt && (await req.write(wire))) sent += piece.length;
      const small = Buffer.alloc(1024, 0x62);
      while (!req.ended && sent < TOTAL - 1024 && Date.now() < giveUpAt) {
        if (await req.write(chunked ? chunk(small) : small)) sent += small.length;
        await new Promise((r) => setTimeout(r, 200));
      }
      const cutOff = req.ended;
      req.close();
      return { ...(await req.outcome), sent, cutOff, chunked };
    };
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => dribble(i)));
    attacking = false;
    await healthLoop;
    // Memory the attack took and kept: measured once the garbage had a chance to go.
    await new Promise((r) => setTimeout(r, 2000));
    rss.stop();
    const after = rssOf(pid);

    const statuses = results.map((r) => r.status ?? r.error ?? 'closed');
    const tally = Object.entries(statuses.reduce<Record<string, number>>((t, s) => ({ ...t, [s]: (t[s] ?? 0) + 1 }), {}));
    console.log(
      `webhook flood: RSS baseline ${mb(baseline)}, peak ${mb(rss.peak())} (+${mb(rss.peak() - baseline)}), after ${mb(after)}; ` +
        `outcomes ${tally.map(([s, n]) => `${s}×${n}`).join(' ')}; slowest cut-off ${Math.max(...results.map((r) => r.endedAfterMs ?? Infinity))} ms; ` +
        `/healthz ${health.length} answers, slowest ${Math.max(...health.map((h) => h.ms))} ms`,
    );

    for (const r of results) {
      expect(r.cutOff, 'the server ended the dribbler, not the test').toBe(true);
      expect(r.sent).toBeLessThan(TOTAL);
      // Refused at once, cut at the budget, or cut by the request timeout (408).
      if (r.status !== undefined) expect([408, 503]).toContain(r.status);
    }
    expect(results.some((r) => r.status === 408), 'some dribbler was cut by the request timeout').toBe(true);
    expect(rss.peak() - baseline, 'RSS growth during the flood').toBeLessThan(BODY_BUDGET + 96 * MB);
    // What V8 keeps right after depends on when it last collected (seen: +32 to +98 MB);
    // the defect this guards against kept ~900 MB. Kept memory stays within the flood's bound.
    expect(after - baseline, 'RSS kept after the flood').toBeLessThan(BODY_BUDGET + 96 * MB);
    expect(health.length).toBeGreaterThanOrEqual(2); // each within 5 s: the loop throws otherwise
    // 503 only if a dependency check (Docker's ping, 2 s) was slow on a loaded machine: still an answer.
    for (const h of health) expect([200, 503]).toContain(h.status);
    expect(health.some((h) => h.status === 200)).toBe(true);

    // And GitHub's real deliveries still go through.
    const push = await deliver(url, pushPayload(REPO, 'main', sha('a'), 'after the flood'));
    expect(push.status).toBe(202);
    expect(push.body.runs).toHaveLength(1);
  });

  it('verifies the signature over the raw bytes received, not their UTF-8 decoding', async () => {
    // A ping whose body holds bytes that are not UTF-8 (0xff 0xfe): decoding changes them.
    const raw = Buffer.concat([Buffer.from('{"zen":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","hook_id":1,"hook":{"type":"Repository"}}')]);
    const post = (signature: string) =>
      fetch(`${url}/webhooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': signature },
        body: raw,
      });
    const overBytes = `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(raw).digest('hex')}`;
    const overText = sign(raw.toString('utf8'), WEBHOOK_SECRET);
    expect(overBytes).not.toBe(overText);
    expect((await post(overBytes)).status).toBe(200);
    expect((await post(overText)).status).toBe(401);
  });

  it("still accepts GitHub's real deliveries: JSON, form-encoded, chunked", async () => {
    expect((await deliver(url, example('ping'), { event: 'ping' })).status).toBe(200);
    const push = pushPayload(REPO, 'main', sha('b'), 'a real push');
    const json = await deliver(url, push);
    expect(json.status).toBe(202);
    expect(json.body.runs).toHaveLength(1);
    const form = `payload=${encodeURIComponent(JSON.stringify(pushPayload(REPO, 'main', sha('c'))))}`;
    expect((await deliver(url, null, { raw: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).toBe(202);
    // Without Content-Length (chunked transfer): read, verified and parsed the same way.
    const body = JSON.stringify(pushPayload(REPO, 'main', sha('d')));
    const res = await fetch(`${url}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': crypto.randomUUID(), 'x-hub-signature-256': sign(body, WEBHOOK_SECRET) },
      body: new Blob([body]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(202);
    // Wrong secret over a real payload: refused.
    expect((await deliver(url, push, { secret: 'not-the-secret' })).status).toBe(401);
  });
});
