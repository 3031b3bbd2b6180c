import { isTerminal } from '../pipeline/states.ts';
import { SSE_PING, sseFrame } from '../lib/sse.ts';
import type { RunStore } from '../store/run-store.ts';

/** Where a live view writes; `write` returns false when the client is not keeping up. */
export interface LiveSink {
  write(frame: string): boolean;
  /** Bytes written but not yet taken by the client. */
  buffered(): number;
  end(): void;
}

interface Watcher {
  runId: string;
  sink: LiveSink;
  /** Last log chunk sent (the SSE event id). */
  afterSeq: number;
  /** The last run snapshot sent, to send one only when something changed. */
  lastRun: string;
  closed: boolean;
  /** When the client fell more than maxBufferedBytes behind (0: it keeps up). */
  behindSince: number;
}

export interface LiveRunsOptions {
  /** How often watched runs are re-read even without a notification (store-side changes). */
  pollMs?: number;
  pingMs?: number;
  maxWatchers?: number;
  /** Past this many unread bytes a client is sent nothing more until it catches up... */
  maxBufferedBytes?: number;
  /** ...and if it stays behind this long it is dropped (it reconnects from its last event id). */
  maxBehindMs?: number;
}

/**
 * Live run views over server-sent events. The store is the truth and events are only a
 * nudge: on a nudge (a worker event applied) or a poll tick, each watcher is sent the log
 * chunks after the last one it got, and the run if it changed. So a missed or duplicated
 * nudge costs nothing, a reconnect resumes exactly (chunk seq = event id), and runs ended
 * by the store itself (superseded or cancelled while queued) are seen by the poll.
 */
export class LiveRuns {
  readonly #store: RunStore;
  readonly #watchers = new Map<string, Set<Watcher>>();
  readonly #dirty = new Set<string>();
  readonly #opts: Required<LiveRunsOptions>;
  #flushScheduled = false;
  #count = 0;
  #poll: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;

  constructor(store: RunStore, opts: LiveRunsOptions = {}) {
    this.#store = store;
    this.#opts = { pollMs: 1000, pingMs: 15_000, maxWatchers: 1000, maxBufferedBytes: 4 * 1024 * 1024, maxBehindMs: 60_000, ...opts };
  }

  get watchers(): number {
    return this.#count;
  }

  get full(): boolean {
    return this.#count >= this.#opts.maxWatchers;
  }

  /**
   * Starts sending `runId` to `sink`: the log after chunk `afterSeq`, the run, then
   * changes until the run ends. Returns the function that stops it.
   */
  watch(runId: string, sink: LiveSink, afterSeq: number): () => void {
    const w: Watcher = { runId, sink, afterSeq, lastRun: '', closed: false, behindSince: 0 };
    let set = this.#watchers.get(runId);
    if (!set) this.#watchers.set(runId, (set = new Set()));
    set.add(w);
    this.#count++;
    this.#startTimers();
    this.#send(w);
    return () => this.#close(w);
  }

  /** A worker event for `runId` was applied to the store. */
  notify(runId: string): void {
    if (!this.#watchers.has(runId)) return;
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

  /** Ends every stream (shutdown): clients reconnect to whichever process serves next. */
  closeAll(): void {
    for (const set of this.#watchers.values()) for (const w of set) this.#close(w);
  }

  #sendRun(runId: string): void {
    for (const w of this.#watchers.get(runId) ?? []) this.#send(w);
  }

  #send(w: Watcher): void {
    if (w.closed) return;
    try {
      if (w.sink.buffered() > this.#opts.maxBufferedBytes) {
        w.behindSince ||= Date.now();
        if (Date.now() - w.behindSince > this.#opts.maxBehindMs) this.#close(w);
        return;
      }
      w.behindSince = 0;
      for (;;) {
        const chunks = this.#store.logChunksAfter(w.runId, w.afterSeq, 200);
        for (const c of chunks) {
          w.sink.write(sseFrame('log', JSON.stringify({ stage: c.stage, text: c.text }), c.seq));
          w.afterSeq = c.seq;
        }
        if (chunks.length < 200) break;
        if (w.sink.buffered() > this.#opts.maxBufferedBytes) break;
      }
      const run = this.#store.getRun(w.runId);
      if (!run) {
        w.sink.write(sseFrame('gone', JSON.stringify({ id: w.runId })));
        this.#close(w);
        return;
      }
      const json = JSON.stringify(run);
      if (json !== w.lastRun) {
        w.lastRun = json;
        w.sink.write(sseFrame('run', json));
      }
      if (isTerminal(run.status) && this.#store.logChunksAfter(w.runId, w.afterSeq, 1).length === 0) {
        w.sink.write(sseFrame('end', JSON.stringify({ status: run.status })));
        this.#close(w);
      }
    } catch {
      // A store error or a dead socket ends this stream only; the client reconnects.
      this.#close(w);
    }
  }

  #close(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    const set = this.#watchers.get(w.runId);
    set?.delete(w);
    if (set?.size === 0) this.#watchers.delete(w.runId);
    this.#count--;
    try {
      w.sink.end();
    } catch {
      // already gone
    }
    if (this.#count === 0) this.#stopTimers();
  }

  #startTimers(): void {
    if (this.#poll) return;
    this.#poll = setInterval(() => {
      // Deleting a Map entry while iterating it is safe: closed runs just drop out.
      for (const id of this.#watchers.keys()) this.#sendRun(id);
    }, this.#opts.pollMs);
    this.#poll.unref();
    this.#ping = setInterval(() => {
      for (const set of this.#watchers.values()) for (const w of set) w.sink.write(SSE_PING);
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
