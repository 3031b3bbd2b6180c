import { isTerminal } from '../pipeline/states.ts';
import { SSE_PING, sseFrame } from '../lib/sse.ts';
import type { RunStore } from '../store/run-store.ts';

/** Where a live view writes: an HTTP response, seen through what the hub needs of it. */
export interface LiveSink {
  write(frame: string): void;
  /** Bytes written but not yet taken by the client. */
  buffered(): number;
  /** Finish the response once the client has read what is buffered. */
  end(): void;
  /** Drop the connection now, buffered bytes included. */
  destroy(): void;
}

interface RunState {
  json: string;
  terminal: boolean;
  status: string;
}

interface Watcher {
  runId: string;
  sink: LiveSink;
  /** Last log chunk sent (the SSE event id). */
  afterSeq: number;
  /** The last run snapshot sent, to send one only when something changed. */
  lastRun: string;
  /** No more frames: the run ended, the client was dropped, or the server is stopping. */
  detached: boolean;
  /** When the client fell more than maxBufferedBytes behind (0: it keeps up). */
  behindSince: number;
  endTimer?: NodeJS.Timeout;
}

export interface LiveRunsOptions {
  /** How often watched runs are re-read even without a notification (store-side changes). */
  pollMs?: number;
  pingMs?: number;
  /** Open views at most (a view counts until its connection is gone). */
  maxWatchers?: number;
  /** Past this many unread bytes a client is sent nothing more until it catches up... */
  maxBufferedBytes?: number;
  /** ...and if it stays behind this long its connection is dropped (it reconnects from its last event id). */
  maxBehindMs?: number;
  /** Unread bytes of all views together past which new views are refused. */
  maxTotalBufferedBytes?: number;
  /** A finished view whose client has not read its last bytes after this long is dropped. */
  endGraceMs?: number;
  /** Open streams (run views and overview streams together) per session or token... */
  maxPerActor?: number;
  /** ...per client address, whoever is signed in there (an office behind one NAT)... */
  maxPerAddress?: number;
  /** ...and per client address for readers who are not signed in (auth.public). */
  maxPerAnonymousAddress?: number;
}

/** Who opens a stream, for the per-client limits. */
export interface LiveClient {
  /** Session or token key; undefined when not signed in. */
  actor: string | undefined;
  address: string;
}

/**
 * Live run views over server-sent events. The store is the truth and events are only a
 * nudge: on a nudge (a worker event applied) or a poll tick, each view is sent the log
 * chunks after the last one it got, and the run if it changed. So a missed or duplicated
 * nudge costs nothing, a reconnect resumes exactly (chunk seq = event id), and runs ended
 * by the store itself (superseded or cancelled while queued) are seen by the poll.
 *
 * Memory is bounded per view (maxBufferedBytes plus one log chunk) and in total: a view
 * counts against the limits until its connection is closed, not merely until the hub
 * stops writing to it, and connections that do not read are destroyed, not ended.
 */
export class LiveRuns {
  readonly #store: RunStore;
  readonly #byRun = new Map<string, Set<Watcher>>();
  /** Every view whose connection is still open, detached or not. */
  readonly #open = new Set<Watcher>();
  readonly #dirty = new Set<string>();
  readonly #opts: Required<LiveRunsOptions>;
  readonly #perClient = new Map<string, number>();
  readonly #listeners: ((runId: string) => void)[] = [];
  #flushScheduled = false;
  #poll: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;

  constructor(store: RunStore, opts: LiveRunsOptions = {}) {
    this.#store = store;
    this.#opts = {
      pollMs: 1000,
      pingMs: 15_000,
      maxWatchers: 1000,
      maxBufferedBytes: 1024 * 1024,
      maxBehindMs: 60_000,
      maxTotalBufferedBytes: 64 * 1024 * 1024,
      endGraceMs: 30_000,
      maxPerActor: 20,
      maxPerAddress: 100,
      maxPerAnonymousAddress: 10,
      ...opts,
    };
  }

  /**
   * Counts a new stream against its client's limits: returns the function that releases
   * it when its connection closes, or why it is refused. So one client (a leaked token,
   * an anonymous reader in public mode) cannot take all the views the server allows.
   */
  admit(client: LiveClient): (() => void) | string {
    const keys: [string, number, string][] = [[`a:${client.address}`, this.#opts.maxPerAddress, 'from this address']];
    if (client.actor) keys.push([`u:${client.actor}`, this.#opts.maxPerActor, 'for this session or token']);
    else keys.push([`n:${client.address}`, this.#opts.maxPerAnonymousAddress, 'for readers not signed in at this address']);
    for (const [key, max, what] of keys) {
      if ((this.#perClient.get(key) ?? 0) >= max) return `${max} live views already open ${what}`;
    }
    for (const [key] of keys) this.#perClient.set(key, (this.#perClient.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const [key] of keys) {
        const n = (this.#perClient.get(key) ?? 1) - 1;
        if (n <= 0) this.#perClient.delete(key);
        else this.#perClient.set(key, n);
      }
    };
  }

  /** Called for every applied worker event (the overview's live stream listens). */
  onEvent(listener: (runId: string) => void): void {
    this.#listeners.push(listener);
  }

  /** Open views (connections not closed yet). */
  get watchers(): number {
    return this.#open.size;
  }

  /** Whether a new view would exceed the number of views or the memory they may hold. */
  get full(): boolean {
    if (this.#open.size >= this.#opts.maxWatchers) return true;
    let total = 0;
    for (const w of this.#open) total += w.sink.buffered();
    return total >= this.#opts.maxTotalBufferedBytes;
  }

  /**
   * Starts sending `runId` to `sink`: the log after chunk `afterSeq`, the run, then
   * changes until the run ends. Returns the function to call when the connection closes.
   */
  watch(runId: string, sink: LiveSink, afterSeq: number): () => void {
    const w: Watcher = { runId, sink, afterSeq, lastRun: '', detached: false, behindSince: 0 };
    let set = this.#byRun.get(runId);
    if (!set) this.#byRun.set(runId, (set = new Set()));
    set.add(w);
    this.#open.add(w);
    this.#startTimers();
    try {
      this.#send(w, this.#runState(runId));
    } catch {
      this.#detach(w);
      sink.destroy();
    }
    return () => this.#release(w);
  }

  /** A worker event for `runId` was applied to the store. */
  notify(runId: string): void {
    for (const l of this.#listeners) l(runId);
    if (!this.#byRun.has(runId)) return;
    this.#dirty.add(runId);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Events arrive in batches from the stream: send once per batch, not once per event.
    setImmediate(() => {
      this.#flushScheduled = false;
      const runs = [...this.#dirty];
      this.#dirty.clear();
      for (const id of runs) this.#sendRun(id);
    });
  }

  /**
   * Ends every stream (shutdown): clients reconnect to whichever process serves next.
   * Ended cleanly, but a client that does not read gets a second, not the usual grace,
   * so it cannot hold up the shutdown.
   */
  closeAll(): void {
    for (const w of this.#open) {
      this.#detach(w);
      clearTimeout(w.endTimer);
      w.sink.end();
      w.endTimer = setTimeout(() => w.sink.destroy(), 1000);
      w.endTimer.unref();
    }
  }

  #runState(runId: string): RunState | undefined {
    const run = this.#store.getRun(runId);
    return run ? { json: JSON.stringify(run), terminal: isTerminal(run.status), status: run.status } : undefined;
  }

  #sendRun(runId: string): void {
    const set = this.#byRun.get(runId);
    if (!set) return;
    // One read of the run for all its views (a busy run may have many tabs open).
    let state: RunState | undefined;
    try {
      state = this.#runState(runId);
    } catch {
      return; // the store is failing: try again on the next nudge or tick
    }
    for (const w of set) this.#send(w, state);
  }

  #send(w: Watcher, run: RunState | undefined): void {
    if (w.detached) return;
    try {
      if (w.sink.buffered() > this.#opts.maxBufferedBytes) {
        w.behindSince ||= Date.now();
        if (Date.now() - w.behindSince > this.#opts.maxBehindMs) {
          this.#detach(w);
          w.sink.destroy();
        }
        return;
      }
      w.behindSince = 0;
      let more = true;
      while (more && w.sink.buffered() <= this.#opts.maxBufferedBytes) {
        const chunks = this.#store.logChunksAfter(w.runId, w.afterSeq, 50);
        more = chunks.length === 50;
        for (const c of chunks) {
          w.sink.write(sseFrame('log', JSON.stringify({ stage: c.stage, text: c.text }), c.seq));
          w.afterSeq = c.seq;
          if (w.sink.buffered() > this.#opts.maxBufferedBytes) break;
        }
      }
      if (run === undefined) {
        w.sink.write(sseFrame('gone', JSON.stringify({ id: w.runId })));
        this.#finish(w);
        return;
      }
      if (run.json !== w.lastRun) {
        w.lastRun = run.json;
        w.sink.write(sseFrame('run', run.json));
      }
      if (run.terminal && this.#store.logChunksAfter(w.runId, w.afterSeq, 1).length === 0) {
        w.sink.write(sseFrame('end', JSON.stringify({ status: run.status })));
        this.#finish(w);
      }
    } catch {
      // A store error or a dead socket ends this view only; the client reconnects.
      this.#detach(w);
      w.sink.destroy();
    }
  }

  /** Last frame sent: end the response, and drop it if the client never reads it. */
  #finish(w: Watcher): void {
    this.#detach(w);
    w.sink.end();
    w.endTimer = setTimeout(() => w.sink.destroy(), this.#opts.endGraceMs);
    w.endTimer.unref();
  }

  /** Sends nothing more to this view; it still counts until its connection closes. */
  #detach(w: Watcher): void {
    if (w.detached) return;
    w.detached = true;
    const set = this.#byRun.get(w.runId);
    set?.delete(w);
    if (set?.size === 0) this.#byRun.delete(w.runId);
  }

  #release(w: Watcher): void {
    this.#detach(w);
    clearTimeout(w.endTimer);
    this.#open.delete(w);
    if (this.#open.size === 0) this.#stopTimers();
  }

  #startTimers(): void {
    if (this.#poll) return;
    this.#poll = setInterval(() => {
      // Deleting a Map entry while iterating it is safe: finished runs just drop out.
      for (const id of this.#byRun.keys()) this.#sendRun(id);
    }, this.#opts.pollMs);
    this.#poll.unref();
    this.#ping = setInterval(() => {
      for (const set of this.#byRun.values()) for (const w of set) w.sink.write(SSE_PING);
    }, this.#opts.pingMs);
    this.#ping.unref();
  }

  #stopTimers(): void {
    clearInterval(this.#poll);
    clearInterval(this.#ping);
    this.#poll = undefined;
    this.#ping = undefined;
  }
}
