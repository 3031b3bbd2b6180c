import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { formatSize } from '../lib/duration.ts';
import { sanitizeLogLine } from '../lib/log-hygiene.ts';
import { withTimeout } from '../lib/timeout.ts';
import { parseRunEvent, type RunEvent, type RunReporter } from '../pipeline/events.ts';
import type { StageName } from '../pipeline/states.ts';
import type { BatchOutcome, RunStore, StreamEntry } from '../store/run-store.ts';

const LOG_FLUSH_MS = 50;
const LOG_BATCH_LINES = 500;
/** How often a flush tries again to send what Redis refused, and the pause before each try. */
const FLUSH_RETRY_DELAYS_MS = [500, 1500, 4000];

/**
 * The stream a store's workers report to: one per store, so two deployers sharing a
 * Redis prefix never read each other's events. Jobs carry it (RunJobData.events);
 * `<prefix>:events` is the stream of reporters that were given no store.
 */
export function eventStreamKey(prefix: string, storeId?: string): string {
  return storeId ? `${prefix}:events:${storeId}` : `${prefix}:events`;
}

/**
 * Publishes one run's events to a Redis stream. Every event is stamped with this
 * execution's id and its number in it (EventStamp), so the store applies each exactly
 * once even when one is sent twice. Log lines are batched (50 ms or 500 lines) so a
 * chatty build costs few round trips; any other event flushes pending lines first, so
 * the order seen by the store is the order of emission. What Redis refuses is kept, in
 * order, and sent again by the next send or flush.
 *
 * The log is bounded here, before it costs memory, Redis traffic or disk: after
 * `maxLogBytes / 2` the reporter keeps only a rolling tail of the same size, and at the
 * next other event (or the end) sends a line saying what was left out, then the tail.
 * Every line passes `sanitizeLogLine` on the way in.
 */
export class StreamReporter implements RunReporter {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #half: number;
  /** This execution of the run: a new id per reporter (one reporter per job taken). */
  readonly exec = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #outbox: string[] = [];
  #pumping: Promise<void> | undefined;
  #failed: unknown;
  #pending: { runId: string; stage: StageName | null; at: string; lines: string[] } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #headBytes = 0;
  #tail: { runId: string; stage: StageName | null; at: string; line: string }[] = [];
  #tailBytes = 0;
  #omittedLines = 0;
  #omittedBytes = 0;

  /** Publishes to `opts.stream`, or `<prefix>:events` when none is given. */
  constructor(redis: Redis, prefix: string, maxLogBytes = 10 * 1024 * 1024, opts: { stream?: string } = {}) {
    this.#redis = redis;
    this.#key = opts.stream ?? eventStreamKey(prefix);
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
    await this.#pump();
    for (const delay of FLUSH_RETRY_DELAYS_MS) {
      if (this.#outbox.length === 0) return;
      await new Promise((r) => setTimeout(r, delay));
      await this.#pump();
    }
    if (this.#outbox.length > 0) throw this.#failed instanceof Error ? this.#failed : new Error(`could not publish ${this.#outbox.length} event(s)`);
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
    this.#outbox.push(JSON.stringify({ ...event, exec: this.exec, seq: ++this.#seq }));
    void this.#pump();
  }

  /** Sends the outbox in order; stops at the first refusal (kept for the next try). */
  #pump(): Promise<void> {
    this.#pumping ??= (async () => {
      try {
        while (this.#outbox.length > 0) {
          await this.#redis.xadd(this.#key, '*', 'e', this.#outbox[0]!);
          this.#outbox.shift();
        }
        this.#failed = undefined;
      } catch (err) {
        this.#failed = err;
      } finally {
        this.#pumping = undefined;
      }
    })();
    return this.#pumping;
  }
}

/** Reads one stream entry's fields into an event, or says why it is not one. */
export function toStreamEntry(id: string, fields: string[]): StreamEntry {
  const raw = fields[1] ?? '';
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { id, event: undefined, raw, invalid: 'not valid JSON' };
  }
  const event = parseRunEvent(value);
  return typeof event === 'string' ? { id, event: undefined, raw, invalid: event } : { id, event, raw };
}

type StreamReply = [string, [string, string[]][]][] | null;

/**
 * The store owner's side: reads its event streams through a consumer group (so events
 * published while it was down are still applied), applies each batch exactly once
 * (RunStore.applyBatch: one transaction that also records how far the stream got),
 * then acknowledges and deletes what it dealt with. After a crash between applying and
 * acknowledging, the same entries are read again and recognised as applied. An entry
 * that keeps failing is set aside after a few tries (logged, recorded, counted on its
 * run) instead of blocking the stream.
 *
 * Listeners of 'applied' get each batch's applied events (only those that changed
 * something), after they are in the store; 'event' is the same, one at a time.
 */
export class EventConsumer extends EventEmitter {
  readonly #redis: Redis;
  readonly #keys: string[];
  readonly #group = 'store';
  // One store reads these streams: a fixed name, so entries it read but never
  // acknowledged before dying are its own pending entries again after a restart.
  readonly #consumer = 'owner';
  readonly #store: Pick<RunStore, 'applyBatch'>;
  readonly #log: Logger;
  #running = false;
  #loop: Promise<void> | undefined;
  /** Each start's loop runs only while it is the current one (a stop that timed out leaves the old loop in a Redis call). */
  #generation = 0;
  #mayApply: () => boolean = () => true;

  /** Reads `streams` (the store's own first, then any older shared one). */
  constructor(redis: Redis, streams: string[], store: Pick<RunStore, 'applyBatch'>, log: Logger) {
    super();
    this.#redis = redis;
    this.#keys = streams;
    this.#store = store;
    this.#log = log;
  }

  /** Asked right before each batch is applied; false: leave it pending (another process may own the store now). */
  guard(mayApply: () => boolean): void {
    this.#mayApply = mayApply;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run(++this.#generation);
  }

  async stop(): Promise<void> {
    this.#running = false;
    // The blocking XREADGROUP returns within its BLOCK timeout; a command stuck on a
    // dead Redis does not, so give up waiting and let the caller's disconnect end it.
    await withTimeout(this.#loop ?? Promise.resolve(), 2500, 'event consumer stop').catch(() => undefined);
  }

  async #run(generation: number): Promise<void> {
    let ensured = false;
    let backlog = true; // first what this consumer read but never acknowledged
    while (this.#running && generation === this.#generation) {
      try {
        if (!ensured) {
          for (const key of this.#keys) {
            await this.#redis.xgroup('CREATE', key, this.#group, '0', 'MKSTREAM').catch((err: unknown) => {
              // Redis' only answer for "the group exists already".
              if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
            });
          }
          ensured = true;
        }
        const res = (await this.#redis.xreadgroup(
          'GROUP', this.#group, this.#consumer, 'COUNT', 500, 'BLOCK', backlog ? 1 : 1000,
          'STREAMS', ...this.#keys, ...this.#keys.map(() => (backlog ? '0' : '>')),
        )) as StreamReply;
        const batches = (res ?? []).filter(([, entries]) => entries.length > 0);
        if (batches.length === 0) {
          backlog = false;
          continue;
        }
        if (generation !== this.#generation || !this.#mayApply()) {
          // Read, not applied: pending for this consumer name, read again by whoever
          // owns the store next (this process included).
          backlog = true;
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        let again = false;
        for (const [key, entries] of batches) {
          // No await between this check and the synchronous apply below.
          if (!this.#mayApply()) {
            again = true;
            break;
          }
          const outcome = this.#store.applyBatch(key, entries.map(([id, fields]) => toStreamEntry(id, fields)));
          this.#report(key, outcome);
          if (outcome.done.length > 0) await this.#redis.multi().xack(key, this.#group, ...outcome.done).xdel(key, ...outcome.done).exec();
          if (outcome.retry) again = true;
        }
        if (again) {
          // An entry failed and stays pending: try it again shortly, from the pending list.
          backlog = true;
          await new Promise((r) => setTimeout(r, 1000));
        }
      } catch (err) {
        if (!this.#running || generation !== this.#generation) break;
        ensured = false;
        backlog = true; // what was read but not applied is re-read from the pending list
        this.#log.warn({ err }, 'event consumer error; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  #report(stream: string, outcome: BatchOutcome): void {
    for (const s of outcome.setAside) {
      this.#log.error({ stream, entry: s.id, run: s.runId, attempts: s.attempts, error: s.error, ...(s.cause ? { err: s.cause } : {}) }, 'event set aside: it could not be applied');
    }
    if (outcome.retry) {
      this.#log.warn({ stream, entry: outcome.retry.id, attempts: outcome.retry.attempts, err: outcome.retry.error }, 'event could not be applied; trying again');
    }
    for (const i of outcome.ignored) {
      const level = i.why === 'duplicate' ? 'debug' : 'warn';
      this.#log[level]({ run: i.event.runId, event: i.event.type, why: i.why, detail: i.detail }, 'ignored event that does not fit the run state');
    }
    if (outcome.alreadyApplied > 0) this.#log.info({ stream, entries: outcome.alreadyApplied }, 'skipped events applied before (read again after a restart)');
    if (outcome.applied.length === 0) return;
    // Listeners read the store, which has these now. A listener's failure must not
    // skip the acknowledgement that follows (the batch would only be skipped again).
    try {
      this.emit('applied', outcome.applied);
      for (const e of outcome.applied) this.emit('event', e);
    } catch (err) {
      this.#log.warn({ err }, 'applied-events listener failed');
    }
  }
}

