import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { isTerminal } from '../pipeline/states.ts';
import type { DeliveryOutcome, NewRun, RunStore, RunView, WaitingRun } from '../store/run-store.ts';
import { Batcher } from './batcher.ts';
import type { ControlPublisher } from './control.ts';
import type { RunJobData, RunQueues } from './run-queue.ts';

export type CancelResult =
  | { kind: 'cancelled' }
  | { kind: 'cancelling' }
  | { kind: 'not_found' }
  | { kind: 'conflict'; reason: string };

/** Thrown when a run could not be queued; nothing was recorded. */
export class QueueUnavailable extends Error {
  readonly code = 'queue_unavailable';
}

/** A push delivery to accept: its id and event, and one new run per matching pipeline. */
export interface PushSubmission {
  delivery: { id: string; event: string };
  runs: NewRun[];
}

/** What a push delivery was answered: `redelivery` when its id was seen before (or earlier in its batch). */
export interface PushAccepted {
  outcome: DeliveryOutcome;
  redelivery: boolean;
}

type PushAnswer = PushAccepted | { error: Error };

/** Bounds one ingest transaction (and so the wait of the pushes behind it). */
const MAX_PUSHES_PER_BATCH = 200;
/** Pushes waiting for a batch at most (each holds its parsed payload's fields). */
const MAX_PUSHES_WAITING = 5000;

/**
 * The store owner's side of the queue: creating and queueing runs, "latest push
 * wins", cancellation, and reconciling the store with the queue after crashes.
 */
export class Scheduler {
  readonly #store: RunStore;
  readonly #queues: RunQueues;
  readonly #control: ControlPublisher;
  readonly #config: Config;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #reconciling: Promise<void> | undefined;
  readonly #pushes: Batcher<PushSubmission, PushAnswer>;

  constructor(opts: { store: RunStore; queues: RunQueues; control: ControlPublisher; config: Config; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#control = opts.control;
    this.#config = opts.config;
    this.#log = opts.log;
    this.#pushes = new Batcher((batch) => this.#acceptPushes(batch), { maxItems: MAX_PUSHES_PER_BATCH });
  }

  /**
   * Accepts a push delivery: records it with its runs and queues them, batched with
   * the pushes that arrive at the same time (one transaction, and one job per pipeline
   * for the whole batch: latest push wins). A delivery id seen before gets its recorded
   * outcome. Throws QueueUnavailable when the runs could not be queued (nothing of the
   * batch is kept), or the store's error when it could not record.
   */
  async submitPush(push: PushSubmission): Promise<PushAccepted> {
    // Pushes pile up here only while Redis or the store is slow: past the cap, answer
    // 503 now (GitHub redelivers) rather than hold more bodies in memory.
    if (this.#pushes.pending >= MAX_PUSHES_WAITING) throw new QueueUnavailable(`${MAX_PUSHES_WAITING} pushes already waiting to be recorded`);
    const answer = await this.#pushes.add(push);
    if ('error' in answer) throw answer.error;
    return answer;
  }

  async #acceptPushes(batch: PushSubmission[]): Promise<PushAnswer[]> {
    const recorded = this.#store.recordPushes(batch.map((p) => ({ id: p.delivery.id, event: p.delivery.event, runs: p.runs })));
    const forget = () => this.#store.forgetRuns(recorded.runIds, recorded.deliveryIds);
    let held: WaitingRun[];
    let jobs: { run: WaitingRun; job: RunJobData }[];
    try {
      // Paused: the push waits, visible, without a job; only the newest one is kept waiting.
      held = recorded.newest.filter((r) => this.#store.pauseOf(r.pipeline) !== undefined);
      jobs = recorded.newest.filter((r) => !held.includes(r)).map((run) => ({ run, job: this.#jobOf(run) }));
    } catch (err) {
      forget();
      throw err;
    }
    const added = await Promise.allSettled(jobs.map(({ job }) => this.#queues.enqueue(job)));
    const failed = added.find((a) => a.status === 'rejected');
    if (failed) {
      // Not queued means not accepted: nothing of the batch is kept, so GitHub's
      // redeliveries start afresh. Every job of the batch is taken out first, the failed
      // ones too (an add that timed out may still have landed). A job that got in and
      // cannot be taken out is with a worker already: then the batch stands as recorded
      // (a 202 for all), and the reconcile loop queues the runs whose job is missing.
      const out = await Promise.all(
        jobs.map(({ run }, i) =>
          this.#queues.removeWaiting(run.pipeline, run.id).then(
            (removed) => removed || added[i]!.status === 'rejected',
            () => added[i]!.status === 'rejected',
          ),
        ),
      );
      if (out.every(Boolean)) {
        forget();
        const error = new QueueUnavailable((failed.reason as Error).message);
        return recorded.answers.map((a) => (a.recordedBefore ? { outcome: a.outcome, redelivery: true } : { error }));
      }
      this.#log.warn({ err: { message: (failed.reason as Error).message } }, 'some runs of a push batch could not be queued, but one is already running: the batch is kept; reconcile queues the rest');
    }
    const warn = (run: WaitingRun) => (err: unknown) =>
      this.#log.warn({ err: { message: (err as Error).message }, run: run.id }, 'could not supersede older runs');
    await Promise.all([
      ...held.map((run) => this.#holdNewest(run).catch(warn(run))),
      ...jobs.map(({ run }) => this.#supersedeOlder(run).catch(warn(run))),
    ]);
    return recorded.answers.map((a) => ({ outcome: a.outcome, redelivery: !a.firstSeen }));
  }

  /**
   * Records runs that are not webhook pushes (rebuild, rollback, poll) and queues them,
   * one at a time. Older runs of the same pipeline still waiting are superseded; with
   * `cancelSuperseded`, a run still before deploy is stopped too.
   */
  async submit(runs: NewRun[]): Promise<RunView[]> {
    const created = this.#store.createRuns(runs);
    // A paused pipeline holds what the branch brings in (webhook pushes take submitPush);
    // a rebuild or rollback asked by hand runs anyway.
    const held = (r: RunView) => r.trigger === 'poll' && this.#store.pauseOf(r.pipeline) !== undefined;
    try {
      for (const run of created) if (!held(run)) await this.#queues.enqueue(this.#jobOf(run));
    } catch (err) {
      this.#store.forgetRuns(created.map((r) => r.id));
      throw new QueueUnavailable((err as Error).message);
    }
    for (const run of created) {
      if (held(run)) {
        await this.#holdNewest(run);
        continue;
      }
      await this.#supersedeOlder(run).catch((err) =>
        this.#log.warn({ err: { message: (err as Error).message }, run: run.id }, 'could not supersede older runs'),
      );
    }
    return created;
  }

  /** Paused: the push waits, visible; only the newest one is kept waiting. */
  async #holdNewest(run: WaitingRun): Promise<void> {
    this.#log.info({ run: run.id, pipeline: run.pipeline }, 'pipeline paused: run held until resumed');
    for (const id of this.#store.queuedRunIdsBefore(run.pipeline, run.id)) {
      if ((await this.#queues.jobState(run.pipeline, id)).state === 'missing') {
        this.#store.finish(id, 'superseded', `superseded by ${run.id}`, run.id);
      }
    }
  }

  async #supersedeOlder(run: WaitingRun): Promise<void> {
    for (const id of this.#store.queuedRunIdsBefore(run.pipeline, run.id)) {
      if (await this.#queues.removeWaiting(run.pipeline, id)) {
        this.#store.finish(id, 'superseded', `superseded by ${run.id}`, run.id);
      }
    }
    const pipeline = this.#config.pipelines.find((p) => p.name === run.pipeline);
    if (!pipeline?.cancelSuperseded) return;
    for (const active of this.#store.activeRuns(run.pipeline)) {
      if (active.id === run.id || active.stages.some((s) => s.name === 'deploy' && s.status !== 'pending')) continue;
      await this.#control.requestStop({ runId: active.id, kind: 'supersede', message: `superseded by ${run.id}`, supersededBy: run.id });
    }
  }

  pause(pipeline: string, reason: string, by: string): void {
    this.#store.pause(pipeline, reason, by);
    this.#log.info({ pipeline, reason, by }, 'pipeline paused');
  }

  /** Un-pauses and queues the newest run held while paused (older ones are superseded). */
  async resume(pipeline: string): Promise<RunView | undefined> {
    this.#store.resume(pipeline);
    const heldRuns: RunView[] = [];
    for (const r of this.#store.queuedRuns(pipeline)) {
      if ((await this.#queues.jobState(pipeline, r.id)).state === 'missing') heldRuns.push(r);
    }
    const newest = heldRuns.pop();
    if (!newest) return undefined;
    await this.#queues.enqueue(this.#jobOf(newest));
    for (const older of heldRuns) this.#store.finish(older.id, 'superseded', `superseded by ${newest.id}`, newest.id);
    await this.#supersedeOlder(newest);
    return newest;
  }

  /** Deploys one run held by a pause, by hand; the pipeline stays paused. */
  async startHeld(runId: string): Promise<{ run: RunView } | { error: string; status: 404 | 409 }> {
    const run = this.#store.getRun(runId);
    if (!run) return { error: `no run "${runId}"`, status: 404 };
    if (run.status !== 'queued' || (await this.#queues.jobState(run.pipeline, run.id)).state !== 'missing') {
      return { error: `run ${runId} is not waiting on a paused pipeline (status ${run.status})`, status: 409 };
    }
    await this.#queues.enqueue(this.#jobOf(run));
    this.#log.info({ run: run.id, pipeline: run.pipeline }, 'held run started by hand');
    return { run };
  }

  /**
   * Redeploys a recorded deployment's exact digest (no rebuild) as a run of its own,
   * and pauses the pipeline so the next push does not silently undo it.
   */
  async rollback(pipeline: string, deploymentId: string | undefined, by: string): Promise<{ run: RunView } | { error: string }> {
    const history = this.#store.deployments(pipeline, 1000);
    const current = history.find((d) => d.replacedAt === null);
    const target = deploymentId
      ? history.find((d) => d.id === deploymentId)
      : history.find((d) => d !== current && d.image !== current?.image);
    if (!target) return { error: deploymentId ? `no deployment "${deploymentId}" in pipeline ${pipeline}` : 'no previous deployment to roll back to' };
    this.pause(pipeline, `rolled back to ${target.commit.slice(0, 12)} (${target.image}) by ${by}`, by);
    const [run] = await this.submit([{ pipeline, trigger: 'rollback', commit: target.commit, targetImage: target.image, requestedBy: by }]);
    return { run: run! };
  }

  /** Cancel: a waiting run ends at once; a running one is stopped by its worker; deploy is refused. */
  async cancel(runId: string, by: string): Promise<CancelResult> {
    const run = this.#store.getRun(runId);
    if (!run) return { kind: 'not_found' };
    if (isTerminal(run.status)) return { kind: 'conflict', reason: `run already ${run.status}` };
    if (run.status === 'queued' && (await this.#queues.removeWaiting(run.pipeline, run.id))) {
      this.#store.finish(run.id, 'cancelled', `cancelled by ${by}`);
      return { kind: 'cancelled' };
    }
    const current = this.#store.getRun(runId)!;
    if (current.stages.some((s) => s.name === 'deploy' && s.status === 'running')) {
      return { kind: 'conflict', reason: 'the run is deploying; a half-cancelled rollout is worse than either outcome' };
    }
    if (isTerminal(current.status)) return { kind: 'conflict', reason: `run already ${current.status}` };
    this.#store.requestCancel(run.id, by);
    await this.#control.requestStop({ runId: run.id, kind: 'cancel', message: `cancelled by ${by}` });
    return { kind: 'cancelling' };
  }

  /** Reconciles now and then every `intervalMs`. */
  start(intervalMs = 15_000): void {
    const tick = () => {
      this.#reconciling ??= this.reconcile()
        .catch((err) => this.#log.warn({ err: { message: (err as Error).message } }, 'reconcile failed'))
        .finally(() => {
          this.#reconciling = undefined;
        });
    };
    tick();
    this.#timer = setInterval(tick, intervalMs);
    this.#timer.unref();
    const prune = () => {
      try {
        this.prune();
      } catch (err) {
        this.#log.warn({ err: { message: (err as Error).message } }, 'retention failed');
      }
    };
    prune();
    this.#pruneTimer = setInterval(prune, 3_600_000);
    this.#pruneTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.#reconciling;
  }

  /** Applies each pipeline's retention (runs by count and age) and forgets old deliveries. */
  prune(): void {
    for (const p of this.#config.pipelines) {
      const removed = this.#store.prune(p.name, p.retention.runs, p.retention.ageMs);
      if (removed > 0) this.#log.info({ pipeline: p.name, removed }, 'old runs removed (retention)');
    }
    this.#store.pruneDeliveries(30 * 86_400_000);
  }

  /**
   * No run stays queued or running forever: a queued run whose job vanished is queued
   * again (an accepted push still runs); a run whose job failed without the worker
   * reporting it (stalled twice: its worker died) is failed with the queue's reason.
   */
  async reconcile(): Promise<void> {
    for (const run of this.#store.runsWithStatus(['queued', 'running'])) {
      if (!this.#config.pipelines.some((p) => p.name === run.pipeline)) {
        this.#store.finish(run.id, 'failed', `pipeline ${run.pipeline} is no longer configured`);
        continue;
      }
      // A run created this instant may not be enqueued yet by submit().
      if (run.status === 'queued' && Date.now() - Date.parse(run.createdAt) < 10_000) continue;
      const { state, failedReason } = await this.#queues.jobState(run.pipeline, run.id);
      if (state === 'missing' && run.status === 'queued' && this.#store.pauseOf(run.pipeline)) continue; // held while paused
      if (state === 'missing' && run.status === 'queued') {
        this.#log.warn({ run: run.id }, 're-queueing a run whose job was lost');
        await this.#queues.enqueue(this.#jobOf(run));
      } else if (state === 'missing') {
        this.#store.finish(run.id, 'failed', 'interrupted: its job is no longer in the queue');
      } else if (state === 'failed') {
        this.#store.finish(run.id, 'failed', `interrupted: ${failedReason ?? 'the job failed'}`);
      }
    }
  }

  #jobOf(run: WaitingRun & { targetImage?: string | null }): RunJobData {
    const recorded: Record<string, string> = {};
    for (const d of this.#store.currentDeployments(run.pipeline)) recorded[d.service] = d.image;
    return { runId: run.id, pipeline: run.pipeline, commit: run.commit, recorded, ...(run.targetImage ? { image: run.targetImage } : {}) };
  }
}
