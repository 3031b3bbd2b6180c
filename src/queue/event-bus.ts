import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { formatSize } from '../lib/duration.ts';
import { sanitizeLogLine } from '../lib/log-hygiene.ts';
import { withTimeout } from '../lib/timeout.ts';
import type { RunEvent, RunReporter } from '../pipeline/events.ts';
import type { StageName } from '../pipeline/states.ts';

const LOG_FLUSH_MS = 50;
const LOG_BATCH_LINES = 500;

/**
 * Publishes one run's events to the Redis stream `<prefix>:events`. Log lines are
 * batched (50 ms or 500 lines) so a chatty build costs few round trips; any other event
 * flushes pending lines first, so the order seen by the store is the order of emission.
 *
 * The log is bounded here, before it costs memory, Redis traffic or disk: after
 * `maxLogBytes / 2` the reporter keeps only a rolling tail of the same size, and at the
 * next other event (or the end) sends a line saying what was left out, then the tail.
 */
export class StreamReporter implements RunReporter {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #half: number;
  #chain: Promise<unknown> = Promise.resolve();
  #pending: { runId: string; stage: StageName | null; at: string; lines: string[] } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failed: unknown;
  #headBytes = 0;
  #tail: { runId: string; stage: StageName | null; at: string; line: string }[] = [];
  #tailBytes = 0;
  #omittedLines = 0;
  #omittedBytes = 0;

  constructor(redis: Redis, prefix: string, maxLogBytes = 10 * 1024 * 1024) {
    this.#redis = redis;
    this.#key = `${prefix}:events`;
    this.#half = Math.max(512, Math.floor(maxLogBytes / 2));
  }

  emit(event: RunEvent): void {
    if (event.type === 'log') {
      // Where log lines enter: capped, and stripped of terminal controls but colours (log-hygiene.ts).
      for (const line of event.lines) this.#log(event.runId, event.stage, event.at, sanitizeLogLine(line));
      return;
    }
    this.#drainTail();
    this.#flushLogs();
    this.#send(event);
  }

  async flush(): Promise<void> {
    this.#drainTail();
    this.#flushLogs();
    await this.#chain;
    if (this.#failed) throw this.#failed;
  }

  #log(runId: string, stage: StageName | null, at: string, line: string): void {
    const bytes = Buffer.byteLength(line) + 1;
    if (this.#headBytes + bytes <= this.#half) {
      this.#headBytes += bytes;
      this.#batch(runId, stage, at, line);
      return;
    }
    this.#headBytes = this.#half; // from now on, only a tail is kept
    this.#tail.push({ runId, stage, at, line });
    this.#tailBytes += bytes;
    while (this.#tailBytes > this.#half && this.#tail.length > 1) {
      const dropped = this.#tail.shift()!;
      const b = Buffer.byteLength(dropped.line) + 1;
      this.#tailBytes -= b;
      this.#omittedLines++;
      this.#omittedBytes += b;
    }
  }

  #drainTail(): void {
    if (this.#tail.length === 0) return;
    const first = this.#tail[0]!;
    if (this.#omittedLines > 0) {
      this.#batch(first.runId, first.stage, first.at, `[… ${this.#omittedLines} lines (${formatSize(this.#omittedBytes)}) left out: logs keep ${formatSize(this.#half * 2)} per run, the start and the end …]`);
    }
    for (const t of this.#tail) this.#batch(t.runId, t.stage, t.at, t.line);
    this.#tail = [];
    this.#tailBytes = 0;
    this.#omittedLines = 0;
    this.#omittedBytes = 0;
  }

  #batch(runId: string, stage: StageName | null, at: string, line: string): void {
    const p = this.#pending;
    if (p && p.runId === runId && p.stage === stage) {
      p.lines.push(line);
      if (p.lines.length >= LOG_BATCH_LINES) this.#flushLogs();
      return;
    }
    this.#flushLogs();
    this.#pending = { runId, stage, at, lines: [line] };
    this.#timer = setTimeout(() => this.#flushLogs(), LOG_FLUSH_MS);
  }

  #flushLogs(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const p = this.#pending;
    this.#pending = undefined;
    if (p) this.#send({ type: 'log', ...p });
  }

  #send(event: RunEvent): void {
    const payload = JSON.stringify(event);
    this.#chain = this.#chain.then(() => this.#redis.xadd(this.#key, '*', 'e', payload)).catch((err) => {
      this.#failed ??= err;
    });
  }
}

/**
 * The store owner's side: reads the event stream through a consumer group (so events
 * published while it was down are still applied), hands each batch to `apply`, then
 * acknowledges and deletes them. Emits 'event' for live views after each is applied.
 */
export class EventConsumer extends EventEmitter {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #group = 'store';
  readonly #consumer = `${hostname()}-${process.pid}`;
  readonly #apply: (events: RunEvent[]) => void;
  readonly #log: Logger;
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(redis: Redis, prefix: string, apply: (events: RunEvent[]) => void, log: Logger) {
    super();
    this.#redis = redis;
    this.#key = `${prefix}:events`;
    this.#apply = apply;
    this.#log = log;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    // The blocking XREADGROUP returns within its BLOCK timeout; a command stuck on a
    // dead Redis does not, so give up waiting and let the caller's disconnect end it.
    await withTimeout(this.#loop ?? Promise.resolve(), 2500, 'event consumer stop').catch(() => undefined);
  }

  async #run(): Promise<void> {
    let ensured = false;
    let backlog = true; // first drain what this consumer read but never acknowledged
    while (this.#running) {
      try {
        if (!ensured) {
          await this.#redis.xgroup('CREATE', this.#key, this.#group, '0', 'MKSTREAM').catch((err: Error) => {
            if (!String(err.message).includes('BUSYGROUP')) throw err;
          });
          ensured = true;
        }
        const res = (await this.#redis.xreadgroup(
          'GROUP', this.#group, this.#consumer, 'COUNT', 500, 'BLOCK', backlog ? 1 : 1000, 'STREAMS', this.#key, backlog ? '0' : '>',
        )) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        if (backlog && entries.length === 0) {
          backlog = false;
          continue;
        }
        if (entries.length === 0) continue;
        const events: RunEvent[] = [];
        for (const [, fields] of entries) {
          const json = fields[1];
          if (!json) continue;
          try {
            events.push(JSON.parse(json) as RunEvent);
          } catch {
            this.#log.warn({ stream: this.#key }, 'skipping malformed event');
          }
        }
        this.#apply(events);
        // Live views read the store, which has these now: tell them before the round
        // trip to acknowledge (a repeat after a failed ack only re-reads the store).
        try {
          for (const e of events) this.emit('event', e);
        } catch (err) {
          // A listener's failure must not skip the ack: the batch would be applied twice.
          this.#log.warn({ err: { message: (err as Error).message } }, 'live view listener failed');
        }
        const ids = entries.map(([id]) => id);
        await this.#redis.multi().xack(this.#key, this.#group, ...ids).xdel(this.#key, ...ids).exec();
      } catch (err) {
        if (!this.#running) break;
        ensured = false;
        backlog = true; // what was read but not applied is re-read from the pending list
        this.#log.warn({ err: { message: (err as Error).message } }, 'event consumer error; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}
