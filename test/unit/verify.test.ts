import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { EdgeVerifySettings } from '../../src/config/verify.ts';
import { checkedRollout } from '../../src/verify/checks.ts';
import { headerShows, judgeAnswer, verifyEdge } from '../../src/verify/edge.ts';
import { percentile, startProbe, summariseProbe } from '../../src/verify/probe.ts';

const NEW = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const OLD = 'ffeeddccbbaa99887766554433221100ffeeddcc';

const answer = (status: number, headers: Record<string, string> = {}, body = '') => ({ status, headers: new Headers(headers), body });

describe('judging one answer from the edge', () => {
  it('header: the value contains the sha (full, or a short prefix of it)', () => {
    const e = { header: 'X-Revision' };
    expect(judgeAnswer(answer(200, { 'x-revision': NEW }), e, NEW)).toEqual({ ok: true, seen: `revision ${NEW.slice(0, 12)}` });
    expect(judgeAnswer(answer(200, { 'x-revision': `v1.2 (${NEW.slice(0, 7)})` }), e, NEW).ok).toBe(true);
    expect(judgeAnswer(answer(200, { 'x-revision': OLD }), e, NEW, OLD)).toEqual({ ok: false, seen: `old revision ${OLD.slice(0, 12)} (X-Revision)` });
    expect(judgeAnswer(answer(200, { 'x-revision': OLD.slice(0, 8) }), e, NEW, OLD)).toEqual({ ok: false, seen: `old revision ${OLD.slice(0, 8)} (X-Revision)` });
    expect(judgeAnswer(answer(200), e, NEW)).toEqual({ ok: false, seen: 'no X-Revision header' });
    expect(judgeAnswer(answer(502, { 'x-revision': NEW }), e, NEW)).toEqual({ ok: false, seen: 'status 502' });
    expect(headerShows('abc', NEW)).toBe(false); // too short to mean anything
  });

  it('body: contains the text with {commit} replaced by the full sha', () => {
    const e = { body: 'revision {commit}' };
    expect(judgeAnswer(answer(200, {}, `<p>revision ${NEW}</p>`), e, NEW).ok).toBe(true);
    expect(judgeAnswer(answer(200, {}, `<p>revision ${OLD}</p>`), e, NEW, OLD)).toEqual({ ok: false, seen: `old revision ${OLD.slice(0, 12)}` });
    expect(judgeAnswer(answer(200, {}, 'maintenance'), e, NEW).seen).toBe(`a body without "revision ${NEW}"`);
  });

  it('status: exactly that status; all given conditions must hold', () => {
    expect(judgeAnswer(answer(204), { status: 204 }, NEW).ok).toBe(true);
    expect(judgeAnswer(answer(200), { status: 204 }, NEW)).toEqual({ ok: false, seen: 'status 200' });
    expect(judgeAnswer(answer(404, {}, NEW), { status: 404, body: '{commit}' }, NEW).ok).toBe(true);
  });
});

/** A real HTTP server whose answers a test scripts per request number. */
async function serve(handler: (n: number, req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; count: () => number; server: Server }> {
  let n = 0;
  const server = createServer((req, res) => handler(++n, req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, count: () => n, server };
}
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

const settings = (url: string, over: Partial<EdgeVerifySettings> = {}): EdgeVerifySettings => ({
  url, expect: { header: 'X-Revision' }, timeoutMs: 3_000, intervalMs: 50, requestTimeoutMs: 1_000, ...over,
});

describe('verifyEdge over real HTTP', () => {
  it('asks until the new revision shows three times in a row, skipping a stray one', async () => {
    // old, old, new (stray), old, then new for good.
    const { url, count } = await serve((n, _req, res) => {
      res.setHeader('x-revision', n === 3 || n >= 5 ? NEW : OLD);
      res.end('ok');
    });
    const lines: string[] = [];
    const r = await verifyEdge({ settings: settings(url), commit: NEW, previousCommit: OLD, log: (l) => lines.push(l) });
    expect(r.ok).toBe(true);
    expect(r.requests).toBe(7);
    expect(count()).toBe(7);
    expect(r.detail).toMatch(/^served by the proxy: revision a1b2c3d4e5f6 \(3 answers in a row/);
    expect(lines.join('\n')).toMatch(/edge: old revision ffeeddccbbaa \(X-Revision\)/);
  });

  it('times out with what the proxy served: an old revision', async () => {
    const { url } = await serve((_n, _req, res) => {
      res.setHeader('x-revision', OLD);
      res.end();
    });
    const r = await verifyEdge({ settings: settings(url, { timeoutMs: 400, intervalMs: 100 }), commit: NEW, previousCommit: OLD });
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/^served by the proxy: old revision ffeeddccbbaa \(X-Revision\) — not a1b2c3d4e5f6 within 400ms \(\d+ requests: \d+ × old revision/);
    expect(r.requests).toBeGreaterThanOrEqual(2);
  });

  it('reports a 502 and a refused connection as such', async () => {
    const { url } = await serve((_n, _req, res) => {
      res.statusCode = 502;
      res.end('bad gateway');
    });
    expect((await verifyEdge({ settings: settings(url, { timeoutMs: 200, intervalMs: 100 }), commit: NEW })).detail).toMatch(/^served by the proxy: status 502/);
    const closed = await serve(() => undefined);
    await new Promise((r) => closed.server.close(r));
    expect((await verifyEdge({ settings: settings(closed.url, { timeoutMs: 200, intervalMs: 100 }), commit: NEW })).detail).toMatch(/^served by the proxy: connection refused/);
  });

  it('sends no-cache, so a cache in front cannot answer for the site', async () => {
    const seen: (string | undefined)[] = [];
    const { url } = await serve((_n, req, res) => {
      seen.push(req.headers['cache-control']);
      res.end(`rev ${NEW}`);
    });
    expect((await verifyEdge({ settings: settings(url, { expect: { body: 'rev {commit}' } }), commit: NEW })).ok).toBe(true);
    expect(seen.every((h) => h === 'no-cache')).toBe(true);
  });
});

describe('probe statistics', () => {
  it('longest gap: the longest time without a good answer, including both ends', () => {
    const s = (sent: number, done: number, ok = true) => ({ sentAtMs: sent, doneAtMs: done, ok });
    const r = summariseProbe('u', [s(0, 5), s(50, 54), s(100, 130, false), s(150, 180, false), s(200, 206), s(250, 251)], 500);
    expect(r).toMatchObject({ sent: 6, failed: 2, longestGapMs: 500 - 251 });
    const r2 = summariseProbe('u', [s(0, 5), s(50, 54), s(100, 130, false), s(150, 180, false), s(200, 206), s(250, 251)], 260);
    expect(r2.longestGapMs).toBe(206 - 54);
    expect(summariseProbe('u', [], 1000)).toMatchObject({ sent: 0, failed: 0, longestGapMs: 1000, p50Ms: 0 });
  });

  it('nearest-rank percentiles', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile([7], 0.99)).toBe(7);
  });

  it('sends on schedule over real HTTP; its counts match what the server received', async () => {
    const { url, count } = await serve((n, _req, res) => {
      res.statusCode = n >= 5 && n <= 8 ? 503 : 200;
      res.end('x');
    });
    const probe = startProbe({ settings: { url, ratePerSecond: 50, maxFailed: 0, requestTimeoutMs: 1_000 } });
    while (probe.snapshot().sent < 25) await new Promise((r) => setTimeout(r, 20));
    const r = await probe.stop();
    expect(r.sent).toBe(count());
    expect(r.failed).toBe(4);
    expect(r.failures.map((f) => f.what)).toEqual(['status 503', 'status 503', 'status 503', 'status 503']);
    // 50/s: the schedule, not the answers, sets the pace.
    expect(r.sent).toBeGreaterThanOrEqual(Math.floor((r.durationMs / 1000) * 50) - 1);
    expect(r.longestGapMs).toBeGreaterThanOrEqual(60); // 4 failures in a row ≈ 100 ms without a good answer
    expect(r.p99Ms).toBeGreaterThan(0);
  });
});

describe('checks around a rollout', () => {
  const verifySettings = (url: string): EdgeVerifySettings => ({ url, expect: { header: 'X-Revision' }, timeoutMs: 600, intervalMs: 50, requestTimeoutMs: 500 });

  it('probes during the rollout and its tail, then verifies the edge; a lie at the edge is a failure', async () => {
    let revision = OLD;
    let down = false;
    const { url, count } = await serve((_n, _req, res) => {
      res.statusCode = down ? 502 : 200;
      res.setHeader('x-revision', revision);
      res.end();
    });
    const lines: string[] = [];
    const good = await checkedRollout({
      probe: { url, ratePerSecond: 50, maxFailed: 0, requestTimeoutMs: 500 }, verify: verifySettings(url), commit: NEW, previousCommit: OLD,
      rollout: async () => {
        await new Promise((r) => setTimeout(r, 100));
        revision = NEW;
        return 'converged';
      },
      converged: (v) => v === 'converged', log: (l) => lines.push(l),
    });
    expect(good.failure).toBeUndefined();
    expect(good.verify).toMatchObject({ ok: true });
    expect(good.probe).toMatchObject({ failed: 0 });
    // The tail: the probe ran ≥ 3 s past the rollout, at 50/s.
    expect(good.probe!.sent).toBeGreaterThanOrEqual(150);
    expect(count()).toBeGreaterThanOrEqual(good.probe!.sent);

    const outage = await checkedRollout({
      probe: { url, ratePerSecond: 50, maxFailed: 0, requestTimeoutMs: 500 }, verify: verifySettings(url), commit: OLD, previousCommit: NEW,
      rollout: async () => {
        down = true;
        await new Promise((r) => setTimeout(r, 200));
        down = false;
        return 'converged';
      },
      converged: () => true, log: () => undefined,
    });
    expect(outage.failure).toMatch(/^the probe saw \d+ of \d+ requests fail/);
    expect(outage.verify).toBeUndefined(); // no point asking the edge: it is rolled back anyway

    const liar = await checkedRollout({ probe: undefined, verify: verifySettings(url), commit: sha40('c'), previousCommit: NEW, rollout: async () => 1, converged: () => true, log: () => undefined });
    expect(liar.failure).toMatch(/^not verified at the edge: served by the proxy: old revision a1b2c3d4e5f6 \(X-Revision\)/);
    expect(liar.probe).toBeUndefined();
  });
});

function sha40(c: string): string {
  return c.repeat(40);
}
