import type { Logger } from 'pino';
import type { Config, PipelineConfig } from '../config/types.ts';
import type { RunStore } from '../store/run-store.ts';
import type { Admission } from './admission.ts';
import type { RunQueues } from './run-queue.ts';

/**
 * Runs deleted per transaction by retention. Measured (bench/scenarios/retention.ts):
 * a batch of this size blocks the event loop for a few milliseconds, with logs.
 */
const RETENTION_BATCH = 50;

/** Lets timers, I/O and requests run before the next batch (setImmediate: after pending I/O). */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Retention in batches of `batch` runs, one short transaction each, yielding to the
 * event loop between them (bench/scenarios/retention.ts measures the longest block).
 * `stopped` ends it early (the daemon is stopping).
 */
export async function pruneInBatches(
  store: Pick<RunStore, 'pruneBatch' | 'forgetOrphanedEvents' | 'pruneDeliveriesBatch'>,
  pipelines: readonly Pick<PipelineConfig, 'name' | 'retention'>[],
  log: Pick<Logger, 'info'>,
  opts: { batch: number; stopped?: () => boolean },
): Promise<number> {
  const { batch } = opts;
  const stopped = opts.stopped ?? (() => false);
  let total = 0;
  for (const p of pipelines) {
    let removed = 0;
    for (;;) {
      const n = store.pruneBatch(p.name, p.retention.runs, p.retention.ageMs, batch);
      removed += n;
      if (n < batch || stopped()) break;
      await yieldToLoop();
    }
    if (removed > 0) log.info({ pipeline: p.name, removed }, 'old runs removed (retention)');
    total += removed;
    await yieldToLoop();
  }
  store.forgetOrphanedEvents();
  while (!stopped() && store.pruneDeliveriesBatch(30 * 86_400_000, batch * 10) === batch * 10) await yieldToLoop();
  return total;
}

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
  #pruning: Promise<void> | undefined;
  #stopping = false;
  #legacyAdopted = false;
  /** Runs whose job an old release's worker still holds in its queue: not judged missing. */
  #heldByOldRelease = new Set<string>();

  constructor(opts: { store: RunStore; queues: RunQueues; admission: Admission; config: Config; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#admission = opts.admission;
    this.#config = opts.config;
    this.#log = opts.log;
  }

  /** Reconciles now and then every `intervalMs`; applies retention now and hourly. */
  start(intervalMs = 15_000): void {
    // Started again after a stop when store ownership comes back (queue/owner-lease.ts).
    this.#stopping = false;
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
      this.#pruning ??= this.prune()
        .catch((err: unknown) => this.#log.warn({ err }, 'retention failed'))
        .finally(() => {
          this.#pruning = undefined;
        });
    };
    prune();
    this.#pruneTimer = setInterval(prune, 3_600_000);
    this.#pruneTimer.unref();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.#reconciling;
    await this.#pruning;
  }

  /**
   * Applies each pipeline's retention (runs by count and age) and forgets old
   * deliveries, off the hot path: in batches of `batch` runs (one short transaction
   * each), yielding to the event loop between them, so requests, webhooks and Redis
   * keep being served while thousands of runs go. Stops early when the daemon stops.
   */
  async prune(opts: { batch?: number } = {}): Promise<void> {
    await pruneInBatches(this.#store, this.#config.pipelines, this.#log, { batch: opts.batch ?? RETENTION_BATCH, stopped: () => this.#stopping });
  }

  /**
   * No run stays queued or running forever: a queued run whose job vanished is queued
   * again (an accepted push still runs); a run whose job failed without the worker
   * reporting it (stalled twice: its worker died) is failed with the queue's reason.
   */
  async reconcile(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? 10_000;
    if (!this.#legacyAdopted) {
      // Before any run is judged by its job: an upgrade from a release with the old queue
      // names leaves live jobs there (see RunQueues.adoptLegacy). Done once nothing of
      // ours is still held there by an old worker.
      const { moved, held } = await this.#queues.adoptLegacy((id) => {
        const run = this.#store.getRun(id);
        if (!run) return 'unknown';
        return run.status === 'queued' || run.status === 'running' ? run.attempts : 'ended';
      });
      if (moved.length > 0) this.#log.warn({ runs: moved }, 'moved runs queued by an older release to this release\'s queue');
      this.#heldByOldRelease = new Set(held);
      if (held.length === 0) this.#legacyAdopted = true;
      else this.#log.warn({ runs: held }, 'runs queued by an older release are still held by its workers; moving them once they let go');
    }
    for (const run of this.#store.runsWithStatus(['queued', 'running'])) {
      if (!this.#config.pipelines.some((p) => p.name === run.pipeline)) {
        this.#store.finish(run.id, 'failed', `pipeline ${run.pipeline} is no longer configured`);
        continue;
      }
      // A run created this instant may not be enqueued yet by submit().
      if (run.status === 'queued' && Date.now() - Date.parse(run.createdAt) < graceMs) continue;
      if (this.#heldByOldRelease.has(run.id)) continue;
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
