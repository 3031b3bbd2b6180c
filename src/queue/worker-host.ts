import { hostname } from 'node:os';
import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { StopRequest } from '../pipeline/cancel.ts';
import type { RunPorts } from '../pipeline/ports.ts';
import { executeRun, type RunOutcome } from '../pipeline/runner.ts';
import { withTimeout } from '../lib/timeout.ts';
import { RedisCheckpoints } from './checkpoints.ts';
import { ControlSubscriber, type StopMessage } from './control.ts';
import { StreamReporter } from './event-bus.ts';
import { queueName, type RunJobData } from './run-queue.ts';

/** How long a graceful shutdown waits for a deploy that is being watched. */
const SHUTDOWN_DEPLOY_WAIT_MS = 120_000;

/**
 * Runs jobs from every pipeline's queue (one at a time per pipeline, at most
 * `worker.concurrency` in all). Knows nothing of the store: everything it learns goes
 * out as events on Redis (event-bus.ts). Stop requests arrive on the control channel.
 * If this process dies, BullMQ's stall detection hands the job to another worker,
 * which starts over, or resumes watching the deploy from the run's checkpoint.
 */
export class WorkerHost {
  readonly #workers: Worker<RunJobData, RunOutcome>[] = [];
  readonly #config: Config;
  readonly #ports: RunPorts;
  readonly #log: Logger;
  readonly #id = `${hostname()}-${process.pid}`;
  readonly #reporterRedis: Redis;
  readonly #prefix: string;
  readonly #checkpoints: RedisCheckpoints;
  readonly #control: ControlSubscriber;
  readonly #active = new Map<string, AbortController>();
  readonly #queues = new Map<string, Queue<RunJobData, RunOutcome>>();
  #slots: number;
  #closing = false;

  constructor(opts: { config: Config; ports: RunPorts; log: Logger; connection: () => Redis; prefix: string }) {
    this.#config = opts.config;
    this.#ports = opts.ports;
    this.#log = opts.log;
    this.#prefix = opts.prefix;
    this.#slots = opts.config.worker.concurrency;
    this.#reporterRedis = opts.connection();
    this.#checkpoints = new RedisCheckpoints(this.#reporterRedis, opts.prefix);
    this.#control = new ControlSubscriber(opts.connection(), this.#reporterRedis, opts.prefix, (msg) => this.#stop(msg));
    for (const p of opts.config.pipelines) {
      const worker = new Worker<RunJobData, RunOutcome>(queueName(p.name), (job, token) => this.#process(job, token), {
        connection: opts.connection(),
        prefix: opts.prefix,
        concurrency: 1,
        // A dead worker's job is noticed within lockDuration + stalledInterval.
        lockDuration: opts.config.worker.deadAfterMs,
        stalledInterval: Math.max(1000, Math.round(opts.config.worker.deadAfterMs / 2)),
        // Retried once after a crash, then failed (the store side records why).
        maxStalledCount: 1,
      });
      worker.on('error', (err) => this.#log.warn({ err: { message: err.message }, pipeline: p.name }, 'worker error'));
      this.#workers.push(worker);
      const queue = new Queue<RunJobData, RunOutcome>(queueName(p.name), { connection: this.#reporterRedis, prefix: opts.prefix });
      queue.on('error', () => undefined);
      this.#queues.set(p.name, queue);
    }
  }

  get id(): string {
    return this.#id;
  }

  #stop(msg: StopMessage): void {
    const controller = this.#active.get(msg.runId);
    if (!controller) return;
    this.#log.info({ run: msg.runId, kind: msg.kind }, 'stop requested');
    controller.abort(new StopRequest(msg.kind, msg.message, msg.supersededBy));
  }

  async #process(job: Job<RunJobData, RunOutcome>, token: string | undefined): Promise<RunOutcome> {
    const { runId } = job.data;
    const pipeline = this.#config.pipelines.find((p) => p.name === job.data.pipeline);
    const reporter = new StreamReporter(this.#reporterRedis, this.#prefix, pipeline?.retention.logBytes);
    const log = this.#log.child({ run: runId, pipeline: job.data.pipeline, commit: job.data.commit });
    if (!pipeline) {
      const at = new Date().toISOString();
      reporter.emit({ type: 'run.finished', runId, status: 'failed', at, error: `pipeline ${job.data.pipeline} is not configured on worker ${this.#id}` });
      await reporter.flush();
      return { status: 'failed' };
    }
    const controller = new AbortController();
    this.#active.set(runId, controller);
    try {
      const newer = await this.#newerSuccess(job);
      if (newer) {
        // Only after a crash can an older run start after a newer one finished
        // (the newer job was free while the dead worker's lock expired): never
        // deploy it over the newer commit.
        log.info({ newer }, 'a newer run already deployed: superseded');
        reporter.emit({ type: 'run.finished', runId, status: 'superseded', at: new Date().toISOString(), error: `superseded by ${newer}`, supersededBy: newer });
        await reporter.flush();
        return { status: 'superseded', supersededBy: newer };
      }
      if (!this.#tryAcquire()) {
        // This process is full: hand the job back so an idle worker (maybe on another
        // host) takes it, instead of holding it behind our own runs.
        await job.moveToDelayed(Date.now() + 250, token);
        throw new DelayedError();
      }
      try {
        const early = await this.#control.pending(runId);
        if (early) controller.abort(new StopRequest(early.kind, early.message, early.supersededBy));
        log.info({ attempt: 1 + (job.stalledCounter ?? 0) }, 'run started');
        const outcome = await executeRun(
          // Attempts count workers that died holding the job, not hand-backs or parking.
          { runId, pipeline, commit: job.data.commit, worker: this.#id, attempt: 1 + (job.stalledCounter ?? 0), instance: this.#config.instance, ...(job.data.image ? { image: job.data.image } : {}), ...(job.data.recorded ? { recorded: job.data.recorded } : {}) },
          this.#ports,
          reporter,
          controller.signal,
          this.#checkpoints,
        );
        log.info({ status: outcome.status, error: outcome.error }, 'run finished');
        if (outcome.status === 'parked') {
          // Back to the queue without counting as a failure: the next start runs it.
          await job.moveToDelayed(Date.now() + 1000, token);
          throw new DelayedError();
        }
        return outcome;
      } finally {
        this.#release();
      }
    } finally {
      this.#active.delete(runId);
    }
  }

  /** The id of a newer run of the same pipeline that already succeeded, if any. */
  async #newerSuccess(job: Job<RunJobData, RunOutcome>): Promise<string | undefined> {
    const queue = this.#queues.get(job.data.pipeline);
    if (!queue) return undefined;
    const done = await queue.getJobs(['completed'], 0, 20, false).catch(() => []);
    // Run ids sort by creation time (src/store/ids.ts).
    return done.find((j) => j.id !== undefined && j.id > job.data.runId && j.returnvalue?.status === 'succeeded')?.id;
  }

  /** Takes a run slot; when the last one is taken, stops fetching jobs until one frees. */
  #tryAcquire(): boolean {
    if (this.#slots <= 0) return false;
    this.#slots--;
    if (this.#slots === 0) for (const w of this.#workers) w.pause(true);
    return true;
  }

  #release(): void {
    this.#slots++;
    if (this.#slots === 1 && !this.#closing) for (const w of this.#workers) w.resume();
  }

  /**
   * Graceful stop: take no new jobs, park runs that have not reached deploy (they
   * resume on the next start), and let deploys being watched finish, within a bound.
   */
  async close(): Promise<void> {
    this.#closing = true;
    const closing = this.#workers.map((w) => w.close());
    for (const [runId, controller] of this.#active) {
      this.#log.info({ run: runId }, 'parking run for shutdown');
      controller.abort(new StopRequest('shutdown', 'the worker is shutting down; the run resumes on the next start'));
    }
    await withTimeout(Promise.all(closing), SHUTDOWN_DEPLOY_WAIT_MS, 'workers did not stop').catch((err) => {
      this.#log.warn({ err: { message: (err as Error).message } }, 'forcing worker shutdown');
      return Promise.all(this.#workers.map((w) => w.close(true)));
    });
    this.#control.close();
    await Promise.all([...this.#queues.values()].map((q) => withTimeout(q.close(), 2000, 'queue close').catch(() => undefined)));
    this.#reporterRedis.disconnect();
  }
}
