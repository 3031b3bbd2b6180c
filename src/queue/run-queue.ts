import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/types.ts';
import type { ServingRecord } from '../pipeline/run-context.ts';
import type { Trigger } from '../pipeline/states.ts';
import { QueueUnavailable } from '../lib/errors.ts';
import { withTimeout } from '../lib/timeout.ts';
import { pipelineFingerprint } from './fingerprint.ts';

/** What a queued job carries: ids only, never secrets or config. */
export interface RunJobData {
  runId: string;
  pipeline: string;
  commit: string | null;
  /** Rollback runs: deploy this pinned image, no build. */
  image?: string;
  /** Last recorded image per service when queued, so the deploy can name drift it replaces. */
  recorded?: Record<string, string>;
  /** The commit the recorded deployment serves (edge verification's "old revision", and its check after a rollback). */
  recordedCommit?: string;
  /** Pinned images of the pipeline's protected rollback targets (retention.protect): never pruned. */
  protect?: string[];
  /** The config it must run with (pipelineFingerprint); its queue is named after it too. */
  fingerprint?: string;
  /** The event stream of the store that queued it: where its worker reports. */
  events?: string;
  /** 'deploy': only the deploy is left (a worker that reaches no swarm manager built it). */
  phase?: 'deploy';
  /** The attempt the deploy continues (deploy phase). */
  attempt?: number;
  /** Why the run exists (push and poll runs are checked for descent from what serves). */
  trigger?: Trigger;
  /** What the store recorded as serving when the run was queued. */
  serving?: ServingRecord;
}

const ENQUEUE_TIMEOUT_MS = 3000;

/**
 * A pipeline's queue: `pipeline-<name>-<fingerprint>` (BullMQ names allow no ":"), so
 * deployers sharing a Redis prefix and pipeline name but not its config never take
 * each other's jobs. `deploy` is the queue of deploys handed to workers that reach a
 * swarm manager.
 */
export function queueName(pipeline: string, fingerprint: string, kind: 'run' | 'deploy' = 'run'): string {
  return `pipeline-${pipeline}-${fingerprint}${kind === 'deploy' ? '-deploy' : ''}`;
}

/** The queue names of one of `config`'s pipelines (tools and tests that look into Redis). */
export function queueNamesOf(config: Config, pipeline: string): { run: string; deploy: string } {
  const p = config.pipelines.find((x) => x.name === pipeline);
  if (!p) throw new Error(`no pipeline ${pipeline}`);
  const fp = pipelineFingerprint(config, p);
  return { run: queueName(p.name, fp), deploy: queueName(p.name, fp, 'deploy') };
}

/**
 * One BullMQ queue per pipeline: a worker per queue with concurrency 1 gives "one run at
 * a time per pipeline" while pipelines proceed in parallel. The store owner's side:
 * adding, removing and looking up jobs.
 */
export class RunQueues {
  readonly #queues = new Map<string, { run: Queue<RunJobData>; deploy: Queue<RunJobData>; fingerprint: string }>();
  readonly #connection: Redis;
  readonly #prefix: string;
  /** Where the workers of these jobs report (the store's event stream). */
  readonly #events: string | undefined;

  constructor(connection: Redis, config: Config, opts: { events?: string } = {}) {
    this.#connection = connection;
    this.#prefix = config.redisPrefix;
    this.#events = opts.events;
    for (const p of config.pipelines) {
      const fingerprint = pipelineFingerprint(config, p);
      const run = new Queue<RunJobData>(queueName(p.name, fingerprint), { connection, prefix: config.redisPrefix });
      const deploy = new Queue<RunJobData>(queueName(p.name, fingerprint, 'deploy'), { connection, prefix: config.redisPrefix });
      // Errors surface through the calls below; without a listener they would be unhandled.
      run.on('error', () => undefined);
      deploy.on('error', () => undefined);
      this.#queues.set(p.name, { run, deploy, fingerprint });
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
    if (status === 'reconnecting' || status === 'close' || status === 'end') return Promise.reject(new QueueUnavailable(`Redis is not connected (${status})`));
    return withTimeout(work(), ENQUEUE_TIMEOUT_MS, what).catch((err: unknown) => {
      throw new QueueUnavailable(`${what}: ${(err as Error).message}`, { cause: err });
    });
  }

  /** Queues a run; throws QueueUnavailable when Redis did not take it. */
  async enqueue(data: RunJobData): Promise<void> {
    const q = this.#queue(data.pipeline);
    const job: RunJobData = { ...data, fingerprint: q.fingerprint, ...(this.#events ? { events: this.#events } : {}) };
    // BullMQ waits for a connection indefinitely; a webhook must fail fast instead, so
    // GitHub gets a 503 and redelivers.
    await this.#bounded(
      () => q.run.add('run', job, { jobId: data.runId, attempts: 1, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } }),
      'Redis did not accept the job',
    );
  }

  /**
   * Removes a run's job if it is still waiting. BullMQ refuses (atomically) to remove
   * a job a worker holds, so `true` means the run will certainly not start.
   */
  async removeWaiting(pipeline: string, runId: string): Promise<boolean> {
    const job = await this.#bounded(() => this.#queue(pipeline).run.getJob(runId), 'Redis did not answer');
    if (!job) return false;
    try {
      await this.#bounded(() => job.remove(), 'Redis did not answer');
      return true;
    } catch {
      return false; // active: a worker has it (or Redis went away: then it is not removed either)
    }
  }

  /**
   * Releases before the fingerprinted queue names (issue #10) queued every run of a
   * pipeline in `pipeline-<name>`. After an upgrade nothing serves those queues, and a
   * run parked or interrupted there by the old release's shutdown would end "its job is
   * no longer in the queue". Moves each job of a run this store still has live to this
   * release's queue (same job id: a waiting push still runs; a started run continues as
   * its next attempt, which the lifecycle lets take over from the old worker's), removes
   * the jobs of runs it has ended, and leaves alone what is not its own (another deployer
   * on the same prefix, still on the old release, may serve that queue) and any job an
   * old worker still holds (its lock is alive: moving it would deploy twice at once).
   * `runOf(runId)`: 'unknown' when the store has no such run, 'ended', or the attempts
   * it has started. Returns the run ids moved and those of ours an old worker still
   * holds (call again later).
   */
  async adoptLegacy(runOf: (runId: string) => number | 'ended' | 'unknown'): Promise<{ moved: string[]; held: string[] }> {
    const moved: string[] = [];
    const held: string[] = [];
    for (const pipeline of this.#queues.keys()) {
      const name = `pipeline-${pipeline}`;
      const legacy = new Queue<RunJobData>(name, { connection: this.#connection, prefix: this.#prefix });
      legacy.on('error', () => undefined);
      try {
        const jobs = await this.#bounded(() => legacy.getJobs(['wait', 'active', 'delayed', 'prioritized']), 'Redis did not answer');
        for (const job of jobs) {
          const runId = job?.data?.runId;
          const run = typeof runId === 'string' ? runOf(runId) : 'unknown';
          if (run === 'unknown' || !job.id) continue;
          const locked = (await this.#bounded(() => this.#connection.exists(`${this.#prefix}:${name}:${job.id}:lock`), 'Redis did not answer')) > 0;
          if (locked) {
            if (run !== 'ended') held.push(runId);
            continue;
          }
          if (run !== 'ended') {
            await this.enqueue({ ...job.data, pipeline, ...(run > 0 ? { attempt: run + 1 } : {}) });
            moved.push(runId);
          }
          await this.#bounded(() => job.remove(), 'Redis did not answer');
        }
      } finally {
        await withTimeout(legacy.close(), 2000, 'queue close').catch(() => undefined);
      }
    }
    return { moved, held };
  }

  /**
   * The run's job state, or 'missing' if the queue has no such job. A run whose deploy
   * was handed off is judged by its deploy job once its build job is done.
   */
  async jobState(pipeline: string, runId: string): Promise<{ state: string; failedReason?: string }> {
    const q = this.#queue(pipeline);
    const run = await this.#state(q.run, runId);
    if (run.state !== 'completed' && run.state !== 'missing') return run;
    const deploy = await this.#state(q.deploy, runId);
    return deploy.state === 'missing' ? run : deploy;
  }

  async #state(queue: Queue<RunJobData>, runId: string): Promise<{ state: string; failedReason?: string }> {
    const job = await this.#bounded(() => queue.getJob(runId), 'Redis did not answer');
    if (!job) return { state: 'missing' };
    const state = await this.#bounded(() => job.getState(), 'Redis did not answer');
    return state === 'failed' ? { state, failedReason: job.failedReason } : { state };
  }

  #queue(pipeline: string): { run: Queue<RunJobData>; deploy: Queue<RunJobData>; fingerprint: string } {
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
    const all = [...this.#queues.values()].flatMap((q) => [q.run, q.deploy]);
    await Promise.all(all.map((q) => withTimeout(q.close(), 2000, 'queue close').catch(() => undefined)));
  }
}
