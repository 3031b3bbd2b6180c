import type { Logger } from 'pino';
import { QueueUnavailable, StoreUnavailable } from '../lib/errors.ts';
import type { DeliveryOutcome, NewRun, RecordedPushes, RunStore, RunView, WaitingRun } from '../store/run-store.ts';
import type { Admission } from './admission.ts';
import { Batcher } from './batcher.ts';
import type { RunQueues } from './run-queue.ts';

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
 * Taking runs in: webhook pushes in batches (one transaction and one job per pipeline
 * for whatever arrives together: latest push wins), and single runs asked for by
 * rebuild, rollback, poll and resume. Not queued means not accepted: a run that
 * cannot be queued is forgotten, and the caller gets QueueUnavailable (HTTP 503).
 */
export class PushIngest {
  readonly #store: RunStore;
  readonly #queues: RunQueues;
  readonly #admission: Admission;
  readonly #log: Logger;
  readonly #pushes: Batcher<PushSubmission, PushAnswer>;

  constructor(opts: { store: RunStore; queues: RunQueues; admission: Admission; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#admission = opts.admission;
    this.#log = opts.log;
    this.#pushes = new Batcher((batch) => this.#acceptPushes(batch), { maxItems: MAX_PUSHES_PER_BATCH });
  }

  /**
   * Accepts a push delivery: records it with its runs and queues them, batched with
   * the pushes that arrive at the same time. A delivery id seen before gets its
   * recorded outcome. Throws QueueUnavailable when the runs could not be queued
   * (nothing of the batch is kept), StoreUnavailable when they could not be recorded.
   */
  async submitPush(push: PushSubmission): Promise<PushAccepted> {
    // Pushes pile up here only while Redis or the store is slow: past the cap, answer
    // 503 now (GitHub redelivers) rather than hold more bodies in memory.
    if (this.#pushes.pending >= MAX_PUSHES_WAITING) throw new QueueUnavailable(`${MAX_PUSHES_WAITING} pushes already waiting to be recorded; retry later`);
    const answer = await this.#pushes.add(push);
    if ('error' in answer) throw answer.error;
    return answer;
  }

  async #acceptPushes(batch: PushSubmission[]): Promise<PushAnswer[]> {
    let recorded: RecordedPushes;
    try {
      recorded = this.#store.recordPushes(batch.map((p) => ({ id: p.delivery.id, event: p.delivery.event, runs: p.runs })));
    } catch (err) {
      throw new StoreUnavailable('could not record the delivery; retry later', { cause: err });
    }
    const forget = () => this.#store.forgetRuns(recorded.runIds, recorded.deliveryIds);
    let held: WaitingRun[];
    let jobs: WaitingRun[];
    try {
      // Paused: the push waits, visible, without a job; only the newest one is kept waiting.
      held = recorded.newest.filter((r) => this.#store.pauseOf(r.pipeline) !== undefined);
      jobs = recorded.newest.filter((r) => !held.includes(r));
    } catch (err) {
      forget();
      throw new StoreUnavailable('could not record the delivery; retry later', { cause: err });
    }
    const added = await Promise.allSettled(jobs.map((run) => this.#admission.enqueue(run)));
    const failed = added.find((a) => a.status === 'rejected');
    if (failed) {
      // Not queued means not accepted: nothing of the batch is kept, so GitHub's
      // redeliveries start afresh. Every job of the batch is taken out first, the failed
      // ones too (an add that timed out may still have landed). A job that got in and
      // cannot be taken out is with a worker already: then the batch stands as recorded
      // (a 202 for all), and the reconcile loop queues the runs whose job is missing.
      const out = await Promise.all(
        jobs.map((run, i) =>
          this.#queues.removeWaiting(run.pipeline, run.id).then(
            (removed) => removed || added[i]!.status === 'rejected',
            () => added[i]!.status === 'rejected',
          ),
        ),
      );
      const reason: unknown = failed.reason;
      if (out.every(Boolean)) {
        forget();
        const error = reason instanceof QueueUnavailable ? reason : new QueueUnavailable('queue unavailable; retry later', { cause: reason });
        return recorded.answers.map((a) => (a.recordedBefore ? { outcome: a.outcome, redelivery: true } : { error }));
      }
      this.#log.warn({ err: reason }, 'some runs of a push batch could not be queued, but one is already running: the batch is kept; reconcile queues the rest');
    }
    // The batch stands: the runs it recorded as superseded are news now.
    this.#store.announceRecorded(recorded);
    await Promise.all([
      ...held.map((run) => this.#admission.holdNewest(run).catch((err: unknown) => this.#log.warn({ err, run: run.id }, 'could not supersede older runs'))),
      ...jobs.map((run) => this.#admission.supersedeOlderQuietly(run)),
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
      for (const run of created) if (!held(run)) await this.#admission.enqueue(run);
    } catch (err) {
      this.#store.forgetRuns(created.map((r) => r.id));
      throw err instanceof QueueUnavailable ? err : new QueueUnavailable('queue unavailable; retry later', { cause: err });
    }
    for (const run of created) {
      if (held(run)) await this.#admission.holdNewest(run);
      else await this.#admission.supersedeOlderQuietly(run);
    }
    return created;
  }
}
