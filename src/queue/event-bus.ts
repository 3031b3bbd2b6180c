import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { withTimeout } from '../lib/timeout.ts';
import type { RunEvent, RunReporter } from '../pipeline/events.ts';
import type { StageName } from '../pipeline/states.ts';

const LOG_FLUSH_MS = 50;
const LOG_BATCH_LINES = 500;

/**
 * Publishes one run's events to the Redis stream `<prefix>:events`. Log lines are
 * batched (50 ms or 500 lines) so a chatty build costs few round trips; any other event
 * flushes pending lines first, so the order seen by the store is the order of emission.
 */
export class StreamReporter implements RunReporter {
  readonly #redis: Redis;
  readonly #key: string;
  #chain: Promise<unknown> = Promise.resolve();
  #pending: { runId: string; stage: StageName | null; at: string; lines: string[] } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failed: unknown;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#key = `${prefix}:events`;
  }

  emit(event: RunEvent): void {
    if (event.type === 'log') {
      const p = this.#pending;
      if (p && p.runId === event.runId && p.stage === event.stage) {
        p.lines.push(...event.lines);
        if (p.lines.length >= LOG_BATCH_LINES) this.#flushLogs();
        return;
      }
      this.#flushLogs();
      this.#pending = { runId: event.runId, stage: event.stage, at: event.at, lines: [...event.lines] };
      this.#timer = setTimeout(() => this.#flushLogs(), LOG_FLUSH_MS);
      return;
    }
    this.#flushLogs();
    this.#send(event);
  }

  async flush(): Promise<void> {
    this.#flushLogs();
    await this.#chain;
    if (this.#failed) throw this.#failed;
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
        const ids = entries.map(([id]) => id);
        await this.#redis.multi().xack(this.#key, this.#group, ...ids).xdel(this.#key, ...ids).exec();
        for (const e of events) this.emit('event', e);
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
