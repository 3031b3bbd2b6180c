import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/** What a queued job carries: ids only, never secrets or config. */
export interface RunJobData {
  runId: string;
  pipeline: string;
  commit: string | null;
}

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
      this.#queues.set(p, new Queue<RunJobData>(queueName(p), { connection, prefix, skipVersionCheck: false }));
    }
  }

  async enqueue(data: RunJobData): Promise<void> {
    const q = this.#queues.get(data.pipeline);
    if (!q) throw new Error(`no queue for pipeline ${data.pipeline}`);
    await q.add('run', data, {
      jobId: data.runId,
      attempts: 1,
      removeOnComplete: { count: 1000 },
      removeOnFail: { count: 1000 },
    });
  }

  get prefix(): string {
    return this.#prefix;
  }

  get connection(): Redis {
    return this.#connection;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }
}
