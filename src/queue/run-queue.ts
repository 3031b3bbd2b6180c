import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { withTimeout } from '../lib/timeout.ts';

/** What a queued job carries: ids only, never secrets or config. */
export interface RunJobData {
  runId: string;
  pipeline: string;
  commit: string | null;
  /** Rollback runs: deploy this pinned image, no build. */
  image?: string;
  /** Last recorded image per service when queued, so the deploy can name drift it replaces. */
  recorded?: Record<string, string>;
}

const ENQUEUE_TIMEOUT_MS = 3000;

export function queueName(pipeline: string): string {
  return `pipeline-${pipeline}`;
}

/**
 * One BullMQ queue per pipeline: a worker per queue with concurrency 1 gives "one run at
 * a time per pipeline" while pipelines proceed in parallel.
 */
export class RunQueues {
  readonly #queues = new Map<string, Queue<RunJobData>>();
  readonly #connection: Redis;
  readonly #prefix: string;

  constructor(connection: Redis, prefix: string, pipelines: string[]) {
    this.#connection = connection;
    this.#prefix = prefix;
    for (const p of pipelines) {
      const q = new Queue<RunJobData>(queueName(p), { connection, prefix });
      // Errors surface through enqueue(); without a listener they would be unhandled.
      q.on('error', () => undefined);
      this.#queues.set(p, q);
    }
  }

  /**
   * BullMQ waits for a lost connection forever (add, getJob, remove alike). Callers here
   * answer HTTP requests or run the reconcile loop, so: fail at once when the connection
   * is known to be down, and give up after ENQUEUE_TIMEOUT_MS when Redis stops answering
   * (or is still being connected to).
   */
  #bounded<T>(work: () => Promise<T>, what: string): Promise<T> {
    const status = this.#connection.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') return Promise.reject(new Error(`Redis is not connected (${status})`));
    return withTimeout(work(), ENQUEUE_TIMEOUT_MS, what);
  }

  async enqueue(data: RunJobData): Promise<void> {
    const q = this.#queue(data.pipeline);
    // BullMQ waits for a connection indefinitely; a webhook must fail fast instead, so
    // GitHub gets a 503 and redelivers.
    await this.#bounded(
      () => q.add('run', data, { jobId: data.runId, attempts: 1, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } }),
      'Redis did not accept the job',
    );
  }

  /**
   * Removes a run's job if it is still waiting. BullMQ refuses (atomically) to remove
   * a job a worker holds, so `true` means the run will certainly not start.
   */
  async removeWaiting(pipeline: string, runId: string): Promise<boolean> {
    const job = await this.#bounded(() => this.#queue(pipeline).getJob(runId), 'Redis did not answer');
    if (!job) return false;
    try {
      await this.#bounded(() => job.remove(), 'Redis did not answer');
      return true;
    } catch {
      return false; // active: a worker has it (or Redis went away: then it is not removed either)
    }
  }

  /** The job's state, or 'missing' if the queue has no such job. */
  async jobState(pipeline: string, runId: string): Promise<{ state: string; failedReason?: string }> {
    const job = await this.#bounded(() => this.#queue(pipeline).getJob(runId), 'Redis did not answer');
    if (!job) return { state: 'missing' };
    const state = await this.#bounded(() => job.getState(), 'Redis did not answer');
    return state === 'failed' ? { state, failedReason: job.failedReason } : { state };
  }

  #queue(pipeline: string): Queue<RunJobData> {
    const q = this.#queues.get(pipeline);
    if (!q) throw new Error(`no queue for pipeline ${pipeline}`);
    return q;
  }

  get prefix(): string {
    return this.#prefix;
  }

  get connection(): Redis {
    return this.#connection;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => withTimeout(q.close(), 2000, 'queue close').catch(() => undefined)));
  }
}

