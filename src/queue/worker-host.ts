import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { RunPorts } from '../pipeline/ports.ts';
import { executeRun, type RunOutcome } from '../pipeline/runner.ts';
import { StreamReporter } from './event-bus.ts';
import { queueName, type RunJobData } from './run-queue.ts';

/**
 * Runs jobs from every pipeline's queue. Knows nothing of the store: everything it
 * learns goes out as events on Redis (see event-bus.ts). A semaphore bounds how many
 * runs execute at once across pipelines (`worker.concurrency`).
 */
export class WorkerHost {
  readonly #workers: Worker<RunJobData, RunOutcome>[] = [];
  readonly #config: Config;
  readonly #ports: RunPorts;
  readonly #log: Logger;
  readonly #id = `${hostname()}-${process.pid}`;
  #slots: number;
  readonly #waiting: (() => void)[] = [];

  constructor(opts: { config: Config; ports: RunPorts; log: Logger; connection: () => Redis; prefix: string }) {
    this.#config = opts.config;
    this.#ports = opts.ports;
    this.#log = opts.log;
    this.#slots = opts.config.worker.concurrency;
    for (const p of opts.config.pipelines) {
      const worker = new Worker<RunJobData, RunOutcome>(queueName(p.name), (job, _token, signal) => this.#process(job, signal), {
        connection: opts.connection(),
        prefix: opts.prefix,
        concurrency: 1,
        // A deploy watch can be long; the lock is renewed, this only bounds a dead worker.
        lockDuration: 60_000,
        maxStalledCount: 1,
      });
      worker.on('error', (err) => this.#log.warn({ err: { message: err.message }, pipeline: p.name }, 'worker error'));
      this.#workers.push(worker);
    }
    this.#reporterRedis = opts.connection();
    this.#prefix = opts.prefix;
  }

  readonly #reporterRedis: Redis;
  readonly #prefix: string;

  async #process(job: Job<RunJobData, RunOutcome>, signal: AbortSignal | undefined): Promise<RunOutcome> {
    const pipeline = this.#config.pipelines.find((p) => p.name === job.data.pipeline);
    const reporter = new StreamReporter(this.#reporterRedis, this.#prefix);
    const log = this.#log.child({ run: job.data.runId, pipeline: job.data.pipeline, commit: job.data.commit });
    if (!pipeline) {
      const at = new Date().toISOString();
      reporter.emit({ type: 'run.finished', runId: job.data.runId, status: 'failed', at, error: `pipeline ${job.data.pipeline} is not configured on worker ${this.#id}` });
      await reporter.flush();
      return { status: 'failed' };
    }
    await this.#acquire();
    try {
      log.info('run started');
      const outcome = await executeRun(
        { runId: job.data.runId, pipeline, commit: job.data.commit, worker: this.#id },
        this.#ports,
        reporter,
        signal ?? new AbortController().signal,
      );
      log.info({ status: outcome.status, error: outcome.error }, 'run finished');
      return outcome;
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<void> {
    if (this.#slots > 0) {
      this.#slots--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#slots++;
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.close()));
    this.#reporterRedis.disconnect();
  }
}
