import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDaemon, type Daemon } from '../../src/daemon.ts';
import { readSse, type SseMessage } from '../../src/lib/sse.ts';
import { StreamReporter } from '../../src/queue/event-bus.ts';
import { ADMIN_TOKEN, AUTH, AUTH_HEADER, testConfig } from '../helpers/config.ts';
import { deliver, pushPayload } from '../helpers/github.ts';
import { runLog, waitForRun } from '../helpers/runs.ts';
import { disposeQueues } from '../helpers/world.ts';

/**
 * Live run views over SSE, end to end through the real path: a worker's StreamReporter
 * → Redis stream → the store owner's consumer → store → GET /api/runs/:id/events over
 * real HTTP. No worker runs: the test plays the worker's part with the worker's own
 * reporter, so it controls when each line leaves.
 */
describe('live run events (SSE)', () => {
  let config: Config;
  let daemon: Daemon | undefined;
  let redis: Redis;
  let url: string;

  beforeAll(async () => {
    config = testConfig({ pipelines: [{ name: 'site', repo: 'acme/live', image: '127.0.0.1:5999/live', services: [] }] });
    // No poll here (an hour): whatever a view receives came from the worker events'
    // nudges, so a broken nudge fails the lock-step test instead of hiding behind the poll.
    daemon = await startDaemon(config, { http: true, worker: false, port: 0, live: { pollMs: 3_600_000 } });
    url = daemon.url!;
    redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  });

  afterAll(async () => {
    redis?.disconnect();
    await daemon?.close();
    await disposeQueues(config);
  });

  const push = async (sha: string): Promise<string> => {
    const res = await deliver(url, pushPayload('acme/live', 'main', sha, 'live'));
    expect(res.status).toBe(202);
    return res.body.runs[0] as string;
  };

  /** Collects a stream's messages in the background; `until` waits for one to match. */
  const follow = (path: string, headers: Record<string, string> = {}, base = url) => {
    const abort = new AbortController();
    const messages: SseMessage[] = [];
    const waiters: { test: (m: SseMessage) => boolean; resolve: (m: SseMessage) => void }[] = [];
    const done = (async () => {
      for await (const m of readSse(`${base}${path}`, { signal: abort.signal, headers: { ...AUTH_HEADER, ...headers } })) {
        messages.push(m);
        const matched = waiters.filter((w) => w.test(m));
        for (const w of matched) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    })().catch((err: Error) => {
      if (err.name !== 'AbortError') throw err;
    });
    const until = (test: (m: SseMessage) => boolean, timeoutMs = 10_000) =>
      new Promise<SseMessage>((resolve, reject) => {
        const seen = messages.find(test);
        if (seen) return resolve(seen);
        const t = setTimeout(() => reject(new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(messages.map((m) => m.event))}`)), timeoutMs);
        waiters.push({ test, resolve: (m) => { clearTimeout(t); resolve(m); } });
      });
    const logText = () => messages.filter((m) => m.event === 'log').map((m) => JSON.parse(m.data).text as string).join('');
    return { messages, until, done, logText, abort: () => abort.abort() };
  };

  const logHas = (line: string) => (m: SseMessage) => m.event === 'log' && (JSON.parse(m.data).text as string).split('\n').includes(line);

  it('sends each log line while the run is going, the run as it changes, then ends', async () => {
    const runId = await push('1'.repeat(40));
    const view = follow(`/api/runs/${runId}/events`);
    const first = await view.until((m) => m.event === 'run');
    expect(JSON.parse(first.data)).toMatchObject({ id: runId, status: 'queued' });

    const reporter = new StreamReporter(redis, config.redisPrefix);
    const at = () => new Date().toISOString();
    reporter.emit({ type: 'run.started', runId, at: at(), worker: 'test-1', attempt: 1 });
    reporter.emit({ type: 'stage.started', runId, stage: 'build', at: at() });
    await view.until((m) => m.event === 'run' && JSON.parse(m.data).status === 'running');
    // Lock step: the next line leaves only once the client has the previous one, so a
    // stream that held lines back (buffering, polling at the end) cannot pass.
    for (let i = 1; i <= 8; i++) {
      reporter.emit({ type: 'log', runId, stage: 'build', at: at(), lines: [`step ${i}`] });
      await view.until(logHas(`step ${i}`), 5000);
    }
    // A burst arrives too, in order, batched.
    reporter.emit({ type: 'log', runId, stage: 'build', at: at(), lines: Array.from({ length: 300 }, (_, i) => `burst ${i}`) });
    reporter.emit({ type: 'stage.finished', runId, stage: 'build', status: 'succeeded', at: at() });
    reporter.emit({ type: 'run.finished', runId, status: 'succeeded', at: at() });
    await reporter.flush();

    const end = await view.until((m) => m.event === 'end');
    expect(JSON.parse(end.data)).toEqual({ status: 'succeeded' });
    await view.done; // the server closed the stream
    const stored = await runLog(url, runId);
    expect(view.logText()).toBe(stored);
    expect(stored).toContain('step 8\nburst 0\n');
    // Event ids are the chunks' positions, increasing, each sent once.
    const ids = view.messages.filter((m) => m.event === 'log').map((m) => Number(m.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    const statuses = view.messages.filter((m) => m.event === 'run').map((m) => JSON.parse(m.data).status);
    expect(statuses[0]).toBe('queued');
    expect(statuses.at(-1)).toBe('succeeded');
    expect(view.messages.at(-1)!.event).toBe('end');

    // Reconnecting with Last-Event-ID resumes exactly after that chunk.
    const logEvents = view.messages.filter((m) => m.event === 'log');
    const resumed = follow(`/api/runs/${runId}/events`, { 'last-event-id': logEvents[1]!.id! });
    await resumed.until((m) => m.event === 'end');
    await resumed.done;
    expect(resumed.logText()).toBe(logEvents.slice(2).map((m) => JSON.parse(m.data).text).join(''));
    // ?after=0 replays the whole log of a finished run.
    const replay = follow(`/api/runs/${runId}/events?after=0`);
    await replay.until((m) => m.event === 'end');
    expect(replay.logText()).toBe(stored);
    // A browser reconnecting after the end, with nothing new, is told to stop (204).
    const again = await fetch(`${url}/api/runs/${runId}/events`, { headers: { ...AUTH_HEADER, 'last-event-id': logEvents.at(-1)!.id! } });
    expect(again.status).toBe(204);
    await waitForZeroWatchers();
  });

  it('sees a run the store ends by itself (superseded while waiting), through the poll', async () => {
    const cfg = testConfig({ pipelines: [{ name: 'site', repo: 'acme/live', image: '127.0.0.1:5999/live', services: [] }] });
    const polled = await startDaemon(cfg, { http: true, worker: false, port: 0, live: { pollMs: 200 } });
    try {
      const send = async (sha: string) => (await deliver(polled.url!, pushPayload('acme/live', 'main', sha, 'live'))).body.runs[0] as string;
      const older = await send('2'.repeat(40));
      const view = follow(`/api/runs/${older}/events`, {}, polled.url!);
      await view.until((m) => m.event === 'run');
      const newer = await send('3'.repeat(40));
      const end = await view.until((m) => m.event === 'end');
      expect(JSON.parse(end.data)).toEqual({ status: 'superseded' });
      const last = view.messages.filter((m) => m.event === 'run').at(-1)!;
      expect(JSON.parse(last.data)).toMatchObject({ status: 'superseded', supersededBy: newer });
      await view.done;
      expect((await waitForRun(polled.url!, older)).status).toBe('superseded');
    } finally {
      await polled.close();
      await disposeQueues(cfg);
    }
  });

  it('holds back from a client that does not read, then drops it; a reader gets everything', async () => {
    const cfg = testConfig({ pipelines: [{ name: 'site', repo: 'acme/live', image: '127.0.0.1:5999/live', services: [] }] });
    const limits = { maxBufferedBytes: 256 * 1024, maxBehindMs: 1500, endGraceMs: 2000, pollMs: 200 };
    const small = await startDaemon(cfg, { http: true, worker: false, port: 0, live: limits });
    const r = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
    try {
      const res = await deliver(small.url!, pushPayload('acme/live', 'main', '6'.repeat(40), 'big'));
      const runId = res.body.runs[0] as string;
      // 8 MiB of log (under the 10 MiB the worker keeps), then the run ends.
      const reporter = new StreamReporter(r, cfg.redisPrefix);
      reporter.emit({ type: 'run.started', runId, at: new Date().toISOString(), worker: 'live-test', attempt: 1 });
      const line = 'x'.repeat(1000);
      for (let i = 0; i < 8 * 1024; i++) reporter.emit({ type: 'log', runId, stage: 'build', at: new Date().toISOString(), lines: [`${i} ${line}`] });
      reporter.emit({ type: 'run.finished', runId, status: 'failed', at: new Date().toISOString(), error: 'big log' });
      await reporter.flush();
      await waitForRun(small.url!, runId);

      // A raw client that asks for the whole log and never reads.
      const port = Number(new URL(small.url!).port);
      const sock = connect(port, '127.0.0.1');
      sock.on('error', () => undefined); // the server resets it: expected
      sock.pause();
      sock.write(`GET /api/runs/${runId}/events?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nAccept: text/event-stream\r\n\r\n`);
      await waitFor('the view opened', () => small.live!.watchers === 1, 5000);
      // The server's side of the connection goes (a view counts until then), after about
      // maxBehindMs, or endGraceMs if the kernel's socket buffers took the whole log.
      await waitFor('the server dropped the client that does not read', () => small.live!.watchers === 0, 15_000);
      sock.destroy();

      // A client that reads gets the whole log, in order, however slow the server held back.
      const reader = follow(`/api/runs/${runId}/events?after=0`, {}, small.url!);
      await reader.until((m) => m.event === 'end', 30_000);
      expect(reader.logText()).toBe(await runLog(small.url!, runId));
    } finally {
      r.disconnect();
      await small.close();
      await disposeQueues(cfg);
    }
  });

  it('lets go of a client that disconnects, and refuses bad requests without opening a stream', async () => {
    const runId = await push('4'.repeat(40));
    const views = [follow(`/api/runs/${runId}/events`), follow(`/api/runs/${runId}/events`)];
    await Promise.all(views.map((v) => v.until((m) => m.event === 'run')));
    expect(daemon!.live!.watchers).toBeGreaterThanOrEqual(2);
    for (const v of views) v.abort();
    await waitForZeroWatchers();

    expect((await fetch(`${url}/api/runs/rnosuchrun00/events`, AUTH)).status).toBe(404);
    expect((await fetch(`${url}/api/runs/BAD/events`, AUTH)).status).toBe(400);
    expect((await fetch(`${url}/api/runs/${runId}/events?after=-1`, AUTH)).status).toBe(400);
    expect((await fetch(`${url}/api/runs/${runId}/events?after=x`, AUTH)).status).toBe(400);
    // A malformed Last-Event-ID is ignored (the stream starts at the tail), not an error.
    const ok = await fetch(`${url}/api/runs/${runId}/events`, { headers: { ...AUTH_HEADER, 'last-event-id': 'nonsense' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await ok.body!.cancel();
    await waitForZeroWatchers();
  });

  it('shutting down ends open views instead of waiting for them', async () => {
    const runId = await push('5'.repeat(40));
    const view = follow(`/api/runs/${runId}/events`);
    await view.until((m) => m.event === 'run');
    const d = daemon!;
    daemon = undefined;
    const closed = d.close().then(() => 'closed');
    const timeout = new Promise((r) => setTimeout(() => r('still waiting after 8 s'), 8000));
    expect(await Promise.race([closed, timeout])).toBe('closed');
    await view.done; // the stream ended (EventSource would reconnect to the next process)
    expect(d.live!.watchers).toBe(0);
  });

  /** Polls `ok` for up to `ms`, then asserts it (with `what` as the message). */
  async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!ok() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(ok(), what).toBe(true);
  }

  function waitForZeroWatchers(): Promise<void> {
    return waitFor('every live view let go', () => daemon!.live!.watchers === 0, 5000);
  }
});
