import type { EdgeVerifySettings } from '../config/verify.ts';
import type { LineSink } from '../pipeline/events.ts';
import type { VerifyResult } from '../pipeline/ports.ts';
import { describeFetchError, formatMs, realClock, type Clock, type Fetch } from './http.ts';

/** What the run records as `verify: { ok, detail, … }` (issue #15's contract): the port's type. */
export type EdgeVerifyResult = VerifyResult;

export interface EdgeVerifyRequest {
  settings: EdgeVerifySettings;
  /** The full sha the edge must show. */
  commit: string;
  /** The sha that served before, to say "old revision" rather than "revision". */
  previousCommit?: string | undefined;
  log?: LineSink;
  signal?: AbortSignal;
  fetch?: Fetch;
  clock?: Clock;
}

/**
 * A single good answer can come from the one upstream out of several that is already
 * new (a proxy still routing to a stale one answers old on the next request): this
 * many good answers in a row make it verified. They are asked for at most this far apart.
 */
export const CONFIRMATIONS = 3;
const CONFIRM_GAP_MS = 200;
/** Bodies beyond this are not read for the body expectation. */
const MAX_BODY = 1024 * 1024;

export interface EdgeAnswer {
  status: number;
  headers: Headers;
  body: string;
}

/** Whether one answer shows `commit`, and what it shows if not (a few words for the detail). */
export function judgeAnswer(answer: EdgeAnswer, expect: EdgeVerifySettings['expect'], commit: string, previousCommit?: string): { ok: boolean; seen: string } {
  const revisionIn = (text: string): string | undefined => {
    if (previousCommit && text.includes(previousCommit)) return `old revision ${previousCommit.slice(0, 12)}`;
    const sha = /\b[0-9a-f]{40}\b/.exec(text)?.[0];
    return sha ? `revision ${sha.slice(0, 12)}` : undefined;
  };
  if (expect.status !== undefined ? answer.status !== expect.status : (expect.body !== undefined || expect.header !== undefined) && (answer.status < 200 || answer.status > 299)) {
    return { ok: false, seen: `status ${answer.status}` };
  }
  if (expect.header !== undefined) {
    const value = answer.headers.get(expect.header);
    if (value === null) return { ok: false, seen: `no ${expect.header} header` };
    if (!headerShows(value, commit)) {
      const what = revisionIn(value) ?? (previousCommit && shortMatch(value, previousCommit) ? `old revision ${value.trim().slice(0, 40)}` : `revision "${value.trim().slice(0, 40)}"`);
      return { ok: false, seen: `${what} (${expect.header})` };
    }
  }
  if (expect.body !== undefined) {
    const wanted = expect.body.replaceAll('{commit}', commit);
    if (!answer.body.includes(wanted)) return { ok: false, seen: revisionIn(answer.body) ?? `a body without "${wanted.slice(0, 80)}"` };
  }
  return { ok: true, seen: `revision ${commit.slice(0, 12)}` };
}

/**
 * The header's value "contains the sha": the full sha anywhere in it, or (as many
 * apps report a short one) a hex word of at least 7 characters the sha starts with.
 */
export function headerShows(value: string, commit: string): boolean {
  return value.includes(commit) || shortMatch(value, commit);
}

function shortMatch(value: string, commit: string): boolean {
  return (value.match(/\b[0-9a-f]{7,40}\b/gi) ?? []).some((w) => commit.startsWith(w.toLowerCase()));
}

/**
 * Asks the edge (the URL users reach, through the real proxy) until it shows the new
 * commit `CONFIRMATIONS` times in a row, or `timeout` passes. Never throws; an abort
 * ends it as not verified.
 */
export async function verifyEdge(req: EdgeVerifyRequest): Promise<EdgeVerifyResult> {
  const { settings, commit } = req;
  const fetchFn = req.fetch ?? fetch;
  const clock = req.clock ?? realClock;
  const log = req.log ?? (() => undefined);
  const started = clock.now();
  const deadline = started + settings.timeoutMs;
  const seenCounts = new Map<string, number>();
  let requests = 0;
  let good = 0;
  let last = 'nothing yet';
  log(`verifying at the edge: ${settings.url} must show ${commit.slice(0, 12)} (${describeExpect(settings.expect)}), for up to ${formatMs(settings.timeoutMs)}`);
  for (;;) {
    if (req.signal?.aborted) break;
    requests++;
    const seen = await ask(fetchFn, settings, commit, req.previousCommit, req.signal);
    seenCounts.set(seen.seen, (seenCounts.get(seen.seen) ?? 0) + 1);
    if (seen.seen !== last) log(`edge: ${seen.seen}`);
    last = seen.seen;
    good = seen.ok ? good + 1 : 0;
    const elapsedMs = clock.now() - started;
    if (good >= CONFIRMATIONS) {
      const detail = `served by the proxy: revision ${commit.slice(0, 12)} (${CONFIRMATIONS} answers in a row after ${formatMs(elapsedMs)}, ${requests} request${requests === 1 ? '' : 's'})`;
      log(`verified at the edge: ${detail}`);
      return { ok: true, detail, commit, url: settings.url, requests, elapsedMs };
    }
    const pause = good > 0 ? Math.min(CONFIRM_GAP_MS, settings.intervalMs) : settings.intervalMs;
    if (clock.now() + pause > deadline) break;
    await clock.sleep(pause, req.signal);
  }
  const elapsedMs = clock.now() - started;
  const tally = [...seenCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([s, n]) => `${n} × ${s}`).join(', ');
  const detail = `served by the proxy: ${last} — not ${commit.slice(0, 12)} within ${formatMs(settings.timeoutMs)} (${requests} request${requests === 1 ? '' : 's'}: ${tally})`;
  log(`NOT verified at the edge: ${detail}`);
  return { ok: false, detail, commit, url: settings.url, requests, elapsedMs };
}

async function ask(fetchFn: Fetch, settings: EdgeVerifySettings, commit: string, previousCommit: string | undefined, signal: AbortSignal | undefined): Promise<{ ok: boolean; seen: string }> {
  const timeout = AbortSignal.timeout(settings.requestTimeoutMs);
  try {
    const res = await fetchFn(settings.url, {
      // A cache in front of the site must not answer for it.
      headers: { 'cache-control': 'no-cache', pragma: 'no-cache', 'user-agent': 'deployer-verify' },
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    const body = settings.expect.body !== undefined ? await readCapped(res, MAX_BODY) : (await res.body?.cancel(), '');
    return judgeAnswer({ status: res.status, headers: res.headers, body }, settings.expect, commit, previousCommit);
  } catch (err) {
    return { ok: false, seen: describeFetchError(err, settings.requestTimeoutMs) };
  }
}

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const decoder = new TextDecoder();
  let text = '';
  let bytes = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    bytes += chunk.byteLength;
    if (bytes >= max) break; // leaving the loop cancels the rest of the body
  }
  return text;
}

function describeExpect(e: EdgeVerifySettings['expect']): string {
  const parts: string[] = [];
  if (e.header !== undefined) parts.push(`header ${e.header} carries the commit`);
  if (e.body !== undefined) parts.push(`body contains "${e.body}"`);
  if (e.status !== undefined) parts.push(`status ${e.status}`);
  return parts.join(', ');
}
