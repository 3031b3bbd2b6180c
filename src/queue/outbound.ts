import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { DeployerError } from '../lib/errors.ts';
import { withTimeout } from '../lib/timeout.ts';

/** A report queue job: ids only (the store has the rest; never a URL or a secret). */
export type OutboundJob = { kind: 'github'; runId: string } | { kind: 'notify'; id: string };

export interface OutboundHandlers {
  /** Posts a run's pending GitHub steps; throws to be retried. */
  github(runId: string, lastAttempt: boolean): Promise<void>;
  /** One attempt of a notification; throws to be retried. */
  notify(id: string, lastAttempt: boolean): Promise<void>;
}

export interface OutboundOptions {
  /** First retry after this, doubling up to `maxDelayMs` (with ±20 % jitter). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Attempts per job: GitHub reports are kept trying longer than notifications. */
  githubAttempts?: number;
  notifyAttempts?: number;
  concurrency?: number;
}

/** The report queue of one store: its jobs name rows of that store only (see Two deployers, one Redis). */
export const outboundQueueName = (storeId: string) => `outbound-${storeId}`;
const ADD_TIMEOUT_MS = 3000;

/**
 * The report queue: GitHub reports and notifications leave the store owner through
 * BullMQ, each retried with capped exponential backoff, so a receiver that is down or
 * slow never touches a run. The store owner's process also runs its worker (the jobs
 * read and record delivery state in the store). One job per run for GitHub (BullMQ
 * deduplication: at most one waiting beside the one being worked on), one per
 * notification.
 */
export class OutboundQueue {
  readonly #queue: Queue<OutboundJob>;
  readonly #worker: Worker<OutboundJob>;
  readonly #connection: Redis;
  readonly #workerConnection: Redis;
  readonly #log: Logger;
  readonly #githubAttempts: number;
  readonly #notifyAttempts: number;

  constructor(opts: { producer: Redis; workerConnection: Redis; prefix: string; storeId: string; handlers: OutboundHandlers; log: Logger } & OutboundOptions) {
    this.#connection = opts.producer;
    this.#workerConnection = opts.workerConnection;
    this.#log = opts.log;
    this.#githubAttempts = opts.githubAttempts ?? 60;
    this.#notifyAttempts = opts.notifyAttempts ?? 12;
    const base = opts.baseDelayMs ?? 2_000;
    const max = opts.maxDelayMs ?? 60_000;
    const name = outboundQueueName(opts.storeId);
    this.#queue = new Queue<OutboundJob>(name, { connection: opts.producer, prefix: opts.prefix });
    this.#queue.on('error', () => undefined); // surfaced through add()
    this.#worker = new Worker<OutboundJob>(name, (job) => this.#process(job, opts.handlers), {
      connection: opts.workerConnection,
      prefix: opts.prefix,
      concurrency: opts.concurrency ?? 4,
      autorun: false,
      settings: {
        backoffStrategy: (attemptsMade: number) => {
          const delay = Math.min(max, base * 2 ** Math.max(0, attemptsMade - 1));
          return Math.round(delay * (0.8 + Math.random() * 0.4));
        },
      },
    });
    this.#worker.on('error', (err) => this.#log.warn({ err: { message: err.message } }, 'report queue worker error'));
  }

  start(): void {
    void this.#worker.run().catch((err) => this.#log.warn({ err: { message: (err as Error).message } }, 'report queue worker stopped'));
  }

  async enqueueGithub(runId: string): Promise<void> {
    await this.#add({ kind: 'github', runId }, { deduplication: { id: `gh-${runId}`, keepLastIfActive: true }, attempts: this.#githubAttempts });
  }

  async enqueueNotification(id: string): Promise<void> {
    await this.#add({ kind: 'notify', id }, { deduplication: { id: `n-${id}` }, attempts: this.#notifyAttempts });
  }

  async #add(data: OutboundJob, opts: { deduplication: { id: string; keepLastIfActive?: boolean }; attempts: number }): Promise<void> {
    const status = this.#connection.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') throw new Error(`Redis is not connected (${status})`);
    await withTimeout(
      this.#queue.add(data.kind, data, { ...opts, backoff: { type: 'custom' }, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } }),
      ADD_TIMEOUT_MS,
      'Redis did not accept the report job',
    );
  }

  async #process(job: Job<OutboundJob>, handlers: OutboundHandlers): Promise<void> {
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    try {
      if (job.data.kind === 'github') await handlers.github(job.data.runId, lastAttempt);
      else await handlers.notify(job.data.id, lastAttempt);
    } catch (err) {
      // The handlers record refusals themselves; what reaches here is worth retrying,
      // unless it is our own permanent error. Anything that is not a delivery failure
      // is a fault of ours: say so.
      if (!(err instanceof DeployerError)) this.#log.warn({ job: job.data, err: { message: (err as Error).message, stack: (err as Error).stack } }, 'report job failed unexpectedly; retrying');
      if (err instanceof DeployerError && !err.retryable) throw new UnrecoverableError(err.message);
      throw err;
    }
  }

  async close(): Promise<void> {
    // BullMQ waits for a lost connection forever: every wait here is bounded (the
    // daemon disconnects the connections afterwards).
    const force = () => withTimeout(this.#worker.close(true), 1000, 'report worker force close').catch(() => undefined);
    if (this.#workerConnection.status !== 'ready') await force(); // nothing to finish without Redis
    else await withTimeout(this.#worker.close(), 5000, 'report worker close').catch(force);
    await withTimeout(this.#queue.close(), this.#connection.status === 'ready' ? 2000 : 500, 'report queue close').catch(() => undefined);
  }
}
