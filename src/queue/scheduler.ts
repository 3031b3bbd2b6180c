import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { isTerminal } from '../pipeline/states.ts';
import type { NewRun, RunStore, RunView } from '../store/run-store.ts';
import type { ControlPublisher } from './control.ts';
import type { RunQueues } from './run-queue.ts';

export type CancelResult =
  | { kind: 'cancelled' }
  | { kind: 'cancelling' }
  | { kind: 'not_found' }
  | { kind: 'conflict'; reason: string };

/** Thrown when a run could not be queued; nothing was recorded. */
export class QueueUnavailable extends Error {
  readonly code = 'queue_unavailable';
}

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
  #reconciling: Promise<void> | undefined;

  constructor(opts: { store: RunStore; queues: RunQueues; control: ControlPublisher; config: Config; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#control = opts.control;
    this.#config = opts.config;
    this.#log = opts.log;
  }

  /**
   * Records the runs (and the delivery) and queues them; only then is the push
   * accepted. Older runs of the same pipeline still waiting are superseded; with
   * `cancelSuperseded`, a run still before deploy is stopped too.
   */
  async submit(runs: NewRun[], delivery?: { id: string; event: string }): Promise<RunView[]> {
    const created = this.#store.createRuns(runs, delivery);
    try {
      for (const run of created) await this.#queues.enqueue({ runId: run.id, pipeline: run.pipeline, commit: run.commit });
    } catch (err) {
      this.#store.forgetRuns(created.map((r) => r.id), delivery?.id);
      throw new QueueUnavailable((err as Error).message);
    }
    for (const run of created) {
      await this.#supersedeOlder(run).catch((err) =>
        this.#log.warn({ err: { message: (err as Error).message }, run: run.id }, 'could not supersede older runs'),
      );
    }
    return created;
  }

  async #supersedeOlder(run: RunView): Promise<void> {
    // Run ids sort by creation time (src/store/ids.ts).
    const older = this.#store.queuedRuns(run.pipeline).filter((r) => r.id < run.id);
    for (const q of older) {
      if (await this.#queues.removeWaiting(q.pipeline, q.id)) {
        this.#store.finish(q.id, 'superseded', `superseded by ${run.id}`, run.id);
      }
    }
    const pipeline = this.#config.pipelines.find((p) => p.name === run.pipeline);
    if (!pipeline?.cancelSuperseded) return;
    for (const active of this.#store.activeRuns(run.pipeline)) {
      if (active.id === run.id || active.stages.some((s) => s.name === 'deploy' && s.status !== 'pending')) continue;
      await this.#control.requestStop({ runId: active.id, kind: 'supersede', message: `superseded by ${run.id}`, supersededBy: run.id });
    }
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
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#reconciling;
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
      if (state === 'missing' && run.status === 'queued') {
        this.#log.warn({ run: run.id }, 're-queueing a run whose job was lost');
        await this.#queues.enqueue({ runId: run.id, pipeline: run.pipeline, commit: run.commit });
      } else if (state === 'missing') {
        this.#store.finish(run.id, 'failed', 'interrupted: its job is no longer in the queue');
      } else if (state === 'failed') {
        this.#store.finish(run.id, 'failed', `interrupted: ${failedReason ?? 'the job failed'}`);
      }
    }
  }
}
