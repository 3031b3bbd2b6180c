import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { RunStore } from '../store/run-store.ts';
import type { Admission } from './admission.ts';
import type { RunQueues } from './run-queue.ts';

/**
 * Keeps the store and the queue telling the same story after crashes, and applies
 * retention: a timer each (reconcile every 15 s, retention hourly), run now and then.
 */
export class Reconciler {
  readonly #store: RunStore;
  readonly #queues: RunQueues;
  readonly #admission: Admission;
  readonly #config: Config;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #reconciling: Promise<void> | undefined;

  constructor(opts: { store: RunStore; queues: RunQueues; admission: Admission; config: Config; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#admission = opts.admission;
    this.#config = opts.config;
    this.#log = opts.log;
  }

  /** Reconciles now and then every `intervalMs`; applies retention now and hourly. */
  start(intervalMs = 15_000): void {
    const tick = () => {
      this.#reconciling ??= this.reconcile()
        .catch((err: unknown) => this.#log.warn({ err }, 'reconcile failed'))
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
        this.#log.warn({ err }, 'retention failed');
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
  async reconcile(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 10_000;
    for (const run of this.#store.runsWithStatus(['queued', 'running'])) {
      if (!this.#config.pipelines.some((p) => p.name === run.pipeline)) {
        this.#store.finish(run.id, 'failed', `pipeline ${run.pipeline} is no longer configured`);
        continue;
      }
      // A run created this instant may not be enqueued yet by submit().
      if (run.status === 'queued' && Date.now() - Date.parse(run.createdAt) < graceMs) continue;
      const { state, failedReason } = await this.#queues.jobState(run.pipeline, run.id);
      // The list above is a snapshot, and every await lets pushes, rebuilds and cancels
      // run: a run superseded or cancelled meanwhile has no job either (that is how they
      // end it). Decide on the run as the store has it now, never on the snapshot.
      if (this.#store.statusOf(run.id) !== run.status) continue;
      if (state === 'missing' && run.status === 'queued' && this.#store.pauseOf(run.pipeline)) continue; // held while paused
      if (state === 'missing' && run.status === 'queued') {
        if (await this.#admission.requeue(run)) this.#log.warn({ run: run.id }, 're-queued a run whose job was lost');
      } else if (state === 'missing') {
        this.#store.finish(run.id, 'failed', 'interrupted: its job is no longer in the queue');
      } else if (state === 'failed') {
        this.#store.finish(run.id, 'failed', `interrupted: ${failedReason ?? 'the job failed'}`);
      }
    }
  }
}
