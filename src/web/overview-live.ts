import { SSE_PING, sseFrame } from '../lib/sse.ts';
import type { DriftWatcher } from '../monitor/drift.ts';
import type { RunQueries } from '../store/run-queries.ts';
import type { LiveRuns, LiveSink } from './live.ts';

/** Past this many unread bytes a stream is dropped: its frames are tiny, so its client is gone. */
const MAX_BUFFERED = 64 * 1024;

/**
 * GET /api/events: one `change` event whenever what the pipelines overview shows may
 * have changed (a run created, started, advanced a stage, ended; a deployment; a pause;
 * drift). At most one every `intervalMs`, whatever the rate of changes. Worker events
 * nudge it; a cheap fingerprint of the store, read on the same tick, catches changes
 * the store makes by itself (superseded, cancelled while waiting, paused).
 */
export class OverviewLive {
  readonly #queries: RunQueries;
  readonly #drift: DriftWatcher;
  readonly #sinks = new Set<LiveSink>();
  readonly #intervalMs: number;
  readonly #pipelines: readonly string[];
  #dirty = false;
  #last = '';
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;

  constructor(queries: RunQueries, live: LiveRuns, drift: DriftWatcher, pipelines: readonly string[], intervalMs = 500) {
    this.#queries = queries;
    this.#pipelines = pipelines;
    this.#drift = drift;
    this.#intervalMs = intervalMs;
    live.onEvent(() => {
      if (this.#sinks.size) this.#dirty = true;
    });
  }

  get streams(): number {
    return this.#sinks.size;
  }

  /** Something changed through the web (an action): tell the streams on the next tick. */
  nudge(): void {
    if (this.#sinks.size) this.#dirty = true;
  }

  watch(sink: LiveSink): () => void {
    if (this.#sinks.size === 0) this.#last = this.#fingerprint();
    this.#sinks.add(sink);
    sink.write(sseFrame('change', JSON.stringify({ at: new Date().toISOString() })));
    this.#timer ??= setInterval(() => this.#tick(), this.#intervalMs);
    this.#timer.unref();
    return () => {
      this.#sinks.delete(sink);
      if (this.#sinks.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  close(): void {
    for (const s of this.#sinks) s.end();
    this.#sinks.clear();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #fingerprint(): string {
    let drift = '';
    for (const p of this.#pipelines) drift += JSON.stringify(this.#drift.driftOf(p) ?? null);
    return `${this.#queries.fingerprint()}|${drift}`;
  }

  #tick(): void {
    let changed = this.#dirty;
    this.#dirty = false;
    try {
      const now = this.#fingerprint();
      if (now !== this.#last) changed = true;
      this.#last = now;
    } catch {
      return; // the store is failing: try again on the next tick
    }
    // A comment every ~15 s keeps proxies from closing an idle stream.
    const ping = ++this.#ticks % Math.max(1, Math.round(15_000 / this.#intervalMs)) === 0;
    if (!changed && !ping) return;
    const frame = changed ? sseFrame('change', JSON.stringify({ at: new Date().toISOString() })) : SSE_PING;
    for (const s of this.#sinks) {
      try {
        if (s.buffered() > MAX_BUFFERED) {
          this.#sinks.delete(s);
          s.destroy();
          continue;
        }
        s.write(frame);
      } catch {
        this.#sinks.delete(s);
        s.destroy();
      }
    }
  }
}
