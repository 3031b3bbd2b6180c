import { hostname } from 'node:os';
import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config, PipelineConfig } from '../config/types.ts';
import { withTimeout } from '../lib/timeout.ts';
import { StopRequest } from '../pipeline/cancel.ts';
import type { FleetJournalPort } from '../pipeline/fleet-journal.ts';
import type { DeployRequest, RunPorts } from '../pipeline/ports.ts';
import { PermanentError } from '../lib/errors.ts';
import { endWithoutRunning, executeRun, type CheckpointPort, type RunJob, type RunOutcome } from '../pipeline/runner.ts';
import { RedisCheckpoints, RedisFleetJournal } from './checkpoints.ts';
import { ControlSubscriber, type StopMessage } from './control.ts';
import { StreamReporter } from './event-bus.ts';
import { pipelineFingerprint } from './fingerprint.ts';
import { queueName, type RunJobData } from './run-queue.ts';
import { ServingCommits } from './serving.ts';

/** How long a graceful shutdown waits for a deploy that is being watched. */
const SHUTDOWN_DEPLOY_WAIT_MS = 120_000;

/** A job this process is running. */
interface Active {
  controller: AbortController;
  job: Job<RunJobData, RunOutcome>;
  token: string | undefined;
  queue: PipelineQueues;
  reporter: StreamReporter;
  attempt: number;
  /** Handed to a successor (a self-deploy): this execution must change nothing more. */
  detached: boolean;
  /** Settles when the processor is done with the job. */
  done: Promise<unknown>;
}

/** One pipeline's queues as this worker sees them. */
interface PipelineQueues {
  pipeline: PipelineConfig;
  run: string;
  deploy: string;
  /** Producer side of the deploy queue, for hand-offs. */
  deployQueue: Queue<RunJobData, RunOutcome>;
  /** The run queue as a reader: is a newer run waiting behind this one? */
  runQueue: Queue<RunJobData, RunOutcome>;
}

/**
 * Runs jobs from every pipeline's queue (one at a time per pipeline, at most
 * `worker.concurrency` in all). Knows nothing of the store: everything it learns goes
 * out as events on Redis (event-bus.ts), to the stream named in the job. Stop requests
 * arrive on the control channel. If this process dies, BullMQ's stall detection hands
 * the job to another worker, which starts over, or resumes watching the deploy from the
 * run's checkpoint.
 *
 * Roles: every worker builds and pushes. A worker whose engines answer as a swarm
 * manager also takes the pipeline's deploy queue; one that reaches no manager hands
 * each deploy to that queue once the image is pushed.
 */
export class WorkerHost {
  readonly #workers: Worker<RunJobData, RunOutcome>[] = [];
  readonly #config: Config;
  readonly #ports: RunPorts;
  readonly #log: Logger;
  readonly #id = `${hostname()}-${process.pid}`;
  readonly #connection: () => Redis;
  readonly #reporterRedis: Redis;
  readonly #prefix: string;
  readonly #checkpoints: RedisCheckpoints;
  readonly #serving: ServingCommits;
  readonly #journal: RedisFleetJournal;
  readonly #control: ControlSubscriber;
  readonly #active = new Map<string, Active>();
  readonly #queues = new Map<string, PipelineQueues>();
  #slots: number;
  #closing = false;
  readonly #roles: Promise<void>;

  constructor(opts: { config: Config; ports: RunPorts; log: Logger; connection: () => Redis; prefix: string }) {
    this.#config = opts.config;
    this.#ports = opts.ports;
    this.#log = opts.log;
    this.#prefix = opts.prefix;
    this.#connection = opts.connection;
    this.#slots = opts.config.worker.concurrency;
    this.#reporterRedis = opts.connection();
    this.#checkpoints = new RedisCheckpoints(this.#reporterRedis, opts.prefix);
    this.#serving = new ServingCommits(this.#reporterRedis, opts.prefix);
    this.#journal = new RedisFleetJournal(this.#reporterRedis, opts.prefix);
    this.#control = new ControlSubscriber(opts.connection(), this.#reporterRedis, opts.prefix, (msg) => this.#stop(msg));
    for (const p of opts.config.pipelines) {
      const fp = pipelineFingerprint(opts.config, p);
      const q: PipelineQueues = {
        pipeline: p, run: queueName(p.name, fp), deploy: queueName(p.name, fp, 'deploy'),
        deployQueue: new Queue(queueName(p.name, fp, 'deploy'), { connection: this.#reporterRedis, prefix: opts.prefix }),
        runQueue: new Queue(queueName(p.name, fp), { connection: this.#reporterRedis, prefix: opts.prefix }),
      };
      q.deployQueue.on('error', () => undefined);
      q.runQueue.on('error', () => undefined);
      this.#queues.set(p.name, q);
      this.#startWorker(q.run, p.name);
    }
    this.#roles = this.#takeDeploys();
  }

  get id(): string {
    return this.#id;
  }

  /** Resolves once this worker knows which deploy queues it serves (tests, start-up log). */
  ready(): Promise<void> {
    return this.#roles;
  }

  #startWorker(name: string, pipeline: string): void {
    const worker = new Worker<RunJobData, RunOutcome>(name, (job, token) => this.#process(job, token), {
      connection: this.#connection(),
      prefix: this.#prefix,
      concurrency: 1,
      // A dead worker's job is noticed within lockDuration + stalledInterval.
      lockDuration: this.#config.worker.deadAfterMs,
      stalledInterval: Math.max(1000, Math.round(this.#config.worker.deadAfterMs / 2)),
      // Retried once after a crash, then failed (the store side records why).
      maxStalledCount: 1,
    });
    worker.on('error', (err) => this.#log.warn({ err, pipeline }, 'worker error'));
    if (this.#slots <= 0) worker.pause(true);
    this.#workers.push(worker);
  }

  /** Serves the deploy queue of each pipeline whose engines answer as swarm managers. */
  async #takeDeploys(): Promise<void> {
    for (const q of this.#queues.values()) {
      const endpoints = q.pipeline.targets.map((t) => t.docker);
      const manager = endpoints.length === 0 || (await this.#ports.deployer.canDeploy(endpoints).catch(() => true));
      if (this.#closing) return;
      if (!manager) {
        this.#log.info({ pipeline: q.pipeline.name, engines: [...new Set(endpoints.map((e) => e.host))] }, 'no swarm manager answers here: this worker builds and pushes, and hands deploys to one that does');
        continue;
      }
      // One deploy at a time per pipeline, across every worker.
      await q.deployQueue.setGlobalConcurrency(1).catch((err: unknown) => this.#log.warn({ err, pipeline: q.pipeline.name }, 'could not limit deploy concurrency'));
      this.#startWorker(q.deploy, q.pipeline.name);
    }
  }

  #stop(msg: StopMessage): void {
    const controller = this.#active.get(msg.runId)?.controller;
    if (!controller) return;
    this.#log.info({ run: msg.runId, kind: msg.kind }, 'stop requested');
    controller.abort(new StopRequest(msg.kind, msg.message, msg.supersededBy));
  }

  async #process(job: Job<RunJobData, RunOutcome>, token: string | undefined): Promise<RunOutcome> {
    const { runId } = job.data;
    const q = this.#queues.get(job.data.pipeline);
    const pipeline = q?.pipeline;
    const reporter = new StreamReporter(this.#reporterRedis, this.#prefix, pipeline?.retention.logBytes, job.data.events ? { stream: job.data.events } : {});
    const log = this.#log.child({ run: runId, pipeline: job.data.pipeline, commit: job.data.commit, exec: reporter.exec });
    const finishUnstarted = async (outcome: RunOutcome & { status: 'failed' | 'superseded'; error: string }) => {
      endWithoutRunning({ runId, worker: this.#id, attempt: (job.data.attempt ?? 1) + (job.stalledCounter ?? 0), ...(job.data.phase ? { phase: job.data.phase } : {}) }, reporter, outcome);
      await reporter.flush();
      return outcome;
    };
    if (!q || !pipeline || (job.data.fingerprint !== undefined && job.data.fingerprint !== pipelineFingerprint(this.#config, pipeline))) {
      // Queues are named by fingerprint, so this means the job was put in the wrong queue by hand.
      return finishUnstarted({ status: 'failed', error: `pipeline ${job.data.pipeline} is not configured like this on worker ${this.#id}`, reported: true });
    }
    if (this.#closing) {
      // Fetched just as the worker began to close: back to the queue, untouched, for
      // the next worker (close waits only for the runs it knew of).
      await job.moveToDelayed(Date.now() + 1000, token);
      throw new DelayedError();
    }
    const controller = new AbortController();
    let finished!: () => void;
    const active: Active = {
      controller, job, token, queue: q, reporter, detached: false,
      attempt: (job.data.attempt ?? 1) + (job.stalledCounter ?? 0),
      done: new Promise<void>((r) => (finished = r)),
    };
    this.#active.set(runId, active);
    // Once the run is handed to a successor, this execution leaves its checkpoint and
    // journal as they are (the successor reads them); its events are stale by then.
    const checkpoints: CheckpointPort = {
      load: (id) => this.#checkpoints.load(id),
      save: async (id, cp) => void (active.detached || (await this.#checkpoints.save(id, cp))),
      clear: async (id) => void (active.detached || (await this.#checkpoints.clear(id))),
    };
    // …and changes no service any more: the successor resumes the deploy (a watch
    // already in flight only reads; what it would do next is refused here).
    const deployer = this.#ports.deployer;
    const handedOver = (): Promise<never> => Promise.reject(new PermanentError('deploy_failed', 'this execution handed the run over to its successor'));
    const ports: RunPorts = {
      ...this.#ports,
      deployer: {
        deploy: (req) => (active.detached ? handedOver() : deployer.deploy(req)),
        restore: (req) => (active.detached ? handedOver() : deployer.restore(req)),
        ...(deployer.precheck ? { precheck: (req: DeployRequest) => (active.detached ? handedOver() : deployer.precheck!(req)) } : {}),
        canDeploy: (endpoints) => deployer.canDeploy(endpoints),
      },
    };
    const journal: FleetJournalPort = {
      begin: (id, service, previous) => this.#journal.begin(id, service, previous),
      mark: async (id, service, state) => void (active.detached || (await this.#journal.mark(id, service, state))),
      entries: (id) => this.#journal.entries(id),
      clear: async (id) => void (active.detached || (await this.#journal.clear(id))),
    };
    try {
      // Latest request wins, here too: the store supersedes older waiting runs when a
      // newer one is queued, but under a storm of requests that lags behind the worker.
      // A first attempt (nothing of it done yet) with a newer run waiting behind it ends
      // at once, superseded by that one, instead of building what is about to be replaced.
      const newer = !job.data.phase && !job.data.attempt && (job.stalledCounter ?? 0) === 0 ? await this.#newerWaiting(q, runId) : undefined;
      if (newer) {
        log.info({ newer }, 'a newer run is waiting: superseded before starting');
        return finishUnstarted({ status: 'superseded', error: `superseded by ${newer}`, supersededBy: newer, reported: true });
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
        // Attempts count workers that died holding the job, not hand-backs or parking.
        const attempt = (job.data.attempt ?? 1) + (job.stalledCounter ?? 0);
        log.info({ attempt, phase: job.data.phase ?? 'run' }, 'run started');
        const runJob: RunJob = {
          runId, pipeline, commit: job.data.commit, worker: this.#id, attempt, instance: this.#config.instance,
          ...(job.data.image ? { image: job.data.image } : {}),
          ...(job.data.recorded ? { recorded: job.data.recorded } : {}),
          ...(job.data.recordedCommit ? { recordedCommit: job.data.recordedCommit } : {}),
          ...(job.data.protect ? { protect: job.data.protect } : {}),
          ...(job.data.phase ? { phase: job.data.phase } : {}),
          ...(job.data.trigger ? { trigger: job.data.trigger } : {}),
          ...(job.data.serving ? { serving: job.data.serving } : {}),
        };
        const outcome = await executeRun(runJob, {
          ports,
          report: reporter,
          stop: controller.signal,
          checkpoints,
          serving: { load: () => this.#serving.load(q.run) },
          journal,
          handoff: { handOff: (j) => this.#handOff(q, job.data, j.attempt) },
        });
        if (active.detached) {
          // Its successor has the job (moved by #handOverSelfDeploy): nothing to complete here.
          log.info({ status: outcome.status }, 'handed-over execution ended; its outcome is the successor\'s to record');
          throw new DelayedError();
        }
        log.info({ status: outcome.status, error: outcome.error }, 'run finished');
        if (outcome.status === 'succeeded' && outcome.commit) {
          await this.#serving.record(q.run, { commit: outcome.commit, runId }).catch((err: unknown) => log.warn({ err }, 'could not record what serves'));
        }
        if (!outcome.reported) {
          // The store never heard the outcome: fail the job, so the store's reconcile
          // loop ends the run with this reason instead of leaving it running.
          throw new Error(`the run ended ${outcome.status} but its events could not be published`);
        }
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
      finished();
    }
  }

  /** The newest waiting run of this queue if it was made after `runId` (run ids sort by creation). */
  async #newerWaiting(q: PipelineQueues, runId: string): Promise<string | undefined> {
    const waiting = await withTimeout(q.runQueue.getWaiting(0, 0), 2000, 'waiting jobs').catch(() => []);
    const newest = waiting[0]?.id;
    return newest !== undefined && newest > runId ? newest : undefined;
  }

  /** Queues the deploy of a built run where workers that reach a swarm manager listen. */
  async #handOff(q: PipelineQueues, data: RunJobData, attempt: number): Promise<void> {
    const { phase: _phase, attempt: _attempt, ...rest } = data;
    await q.deployQueue.add('deploy', { ...rest, phase: 'deploy', attempt }, { jobId: data.runId, attempts: 1, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } });
  }

  /**
   * Hands a run that is deploying this deployer's own service (its checkpoint says so)
   * to the successor: the run says so, and its job goes where a worker that deploys
   * takes it (the deploy queue, phase deploy) with the checkpoint intact. The new task
   * resumes watching the rollout, checks it runs the new image, and records the outcome.
   * If moving the job fails, the lock lapses and BullMQ's stall check hands it on anyway.
   */
  async #handOverSelfDeploy(runId: string, a: Active): Promise<boolean> {
    const cp = await this.#checkpoints.load(runId).catch(() => undefined);
    // Only while the update of this process's own service is in flight: once it is done,
    // this process is already the new version, and its deploy is waited for as any other.
    if (!cp?.selfService || !cp.deployStartedAt || cp.servicesDone.includes(cp.selfService)) return false;
    a.detached = true;
    const log = this.#log.child({ run: runId, pipeline: a.queue.pipeline.name });
    try {
      a.reporter.emit({ type: 'run.handoff', runId, at: new Date().toISOString(), reason: `this worker (${this.#id}) is stopping while it deploys the deployer's own service ${cp.selfService}: the new task takes the run over` });
      await a.reporter.flush();
      if (a.job.data.phase === 'deploy') {
        // Its data and stall count stay: the successor counts the same attempt.
        await a.job.moveToDelayed(Date.now(), a.token);
      } else {
        await this.#handOff(a.queue, a.job.data, a.attempt);
        await a.job.moveToCompleted({ status: 'handed_off', reported: true }, a.token ?? '', false);
      }
      log.info({ service: cp.selfService }, 'self-deploy handed over to the successor');
    } catch (err) {
      log.warn({ err }, 'could not hand the self-deploy over; it is taken over once this worker\'s lock lapses');
    }
    return true;
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
    await this.#roles.catch(() => undefined);
    // No new jobs from here on; the active ones are dealt with below.
    await Promise.all(this.#workers.map((w) => w.pause(true).catch(() => undefined)));
    // A deploy of this deployer's own service is what stops this process: waiting for
    // it would wait for our own replacement. Its successor takes it over.
    await Promise.all([...this.#active.entries()].map(([runId, a]) => this.#handOverSelfDeploy(runId, a)));
    // Their queues' workers are closed without waiting (the executions still watch).
    const abandoned = new Set([...this.#active.values()].filter((a) => a.detached).map((a) => a.job.queueName));
    for (const [runId, a] of this.#active) {
      if (a.detached) continue;
      this.#log.info({ run: runId }, 'parking run for shutdown');
      a.controller.abort(new StopRequest('shutdown', 'the worker is shutting down; the run resumes on the next start'));
    }
    const rest = [...this.#active.values()].filter((a) => !a.detached).map((a) => a.done);
    const inTime = await withTimeout(Promise.all(rest), SHUTDOWN_DEPLOY_WAIT_MS, 'workers did not stop').then(
      () => true,
      (err: unknown) => {
        this.#log.warn({ err }, 'forcing worker shutdown');
        return false;
      },
    );
    // Forced where a handed-over execution is still watching (its successor now holds the
    // job); the others close normally, so a job that just finished is marked completed.
    await withTimeout(Promise.all(this.#workers.map((w) => w.close(abandoned.has(w.name) || !inTime))), 10_000, 'workers did not close').catch((err: unknown) => {
      this.#log.warn({ err }, 'forcing worker shutdown');
      return Promise.all(this.#workers.map((w) => w.close(true)));
    });
    this.#control.close();
    await Promise.all([...this.#queues.values()].flatMap((q) => [q.deployQueue, q.runQueue]).map((queue) => withTimeout(queue.close(), 2000, 'queue close').catch(() => undefined)));
    this.#reporterRedis.disconnect();
  }
}
