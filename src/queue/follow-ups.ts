import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import { errorMessage } from '../lib/errors.ts';
import type { LifecycleEvent } from '../pipeline/lifecycle.ts';
import { previousGoodPush, type BurstRun } from '../pipeline/previous-good.ts';
import type { NewRun, RunStore, RunView } from '../store/run-store.ts';

/**
 * Runs the store starts because of how another one ended.
 *
 * Catch-up: a run that deployed a commit behind its branch head is followed by a run
 * for the head (see #catchUp).
 *
 * `onFailure: previous-good-push` (issue #15, item 5): when the newest run of a burst
 * of pushes fails or is rolled back, the pushes it superseded were never tried. This
 * listens to applied run endings (RunStore.onApplied, so it reacts whether a worker
 * reported the end or the store decided it) and starts the newest superseded commit
 * that is newer than what serves, as its own run linked to the failed one (`follows`).
 * The decision is the pure `previousGoodPush`.
 */
export class FollowUps {
  readonly #store: RunStore;
  readonly #config: Config;
  readonly #submit: (runs: NewRun[]) => Promise<RunView[]>;
  readonly #checkBranch: (pipeline: string) => Promise<unknown>;
  readonly #log: Logger;

  /** `checkBranch`: the branch poller's "Check now" (queues the branch head unless a run for it is on its way, has run or serves). */
  constructor(opts: { store: RunStore; config: Config; submit: (runs: NewRun[]) => Promise<RunView[]>; checkBranch: (pipeline: string) => Promise<unknown>; log: Logger }) {
    this.#store = opts.store;
    this.#config = opts.config;
    this.#submit = opts.submit;
    this.#checkBranch = opts.checkBranch;
    this.#log = opts.log;
  }

  /** For RunStore.onApplied: never throws, never blocks the applier. */
  applied(events: LifecycleEvent[]): void {
    for (const e of events) {
      if (e.type === 'run.finished' && e.status === 'succeeded' && e.branchHead) {
        const head = e.branchHead;
        void this.#catchUp(e.runId, head).catch((err: unknown) => this.#log.warn({ run: e.runId, commit: head, err: errorMessage(err) }, 'catch-up: could not start a run for the branch head'));
      }
      if ((e.type === 'run.finished' || e.type === 'store.finished') && (e.status === 'failed' || e.status === 'rolled_back')) {
        void this.#consider(e.runId).catch((err: unknown) => this.#log.warn({ run: e.runId, err: errorMessage(err) }, 'previous-good-push: could not start the follow-up run'));
      }
    }
  }

  /**
   * A run deployed a commit that was not the branch head (an older push replayed or
   * delivered late while the newer push's run was superseded by it, or a push whose
   * webhook never came): the branch is checked now, as "Check now" does — where it
   * points is asked afresh (the run's view may be stale: a newer push may be waiting
   * already), and its head is queued as a poll run unless a run for it is on its way,
   * has run, or it serves. `head` (what the run saw) only decides whether to look.
   */
  async #catchUp(runId: string, head: string): Promise<void> {
    const run = this.#store.getRun(runId);
    if (!run) return;
    if (this.#store.pauseOf(run.pipeline)) return;
    if (this.#store.statusesForCommit(run.pipeline, head).some((s) => s !== 'superseded')) return;
    const result = await this.#checkBranch(run.pipeline);
    this.#log.info({ pipeline: run.pipeline, after: runId, sawHead: head, result }, 'deployed commit was not the branch head: checked the branch');
  }

  async #consider(runId: string): Promise<void> {
    const failed = this.#store.getRun(runId);
    if (!failed || (failed.status !== 'failed' && failed.status !== 'rolled_back') || !failed.commit) return;
    const pipeline = this.#config.pipelines.find((p) => p.name === failed.pipeline);
    if (pipeline?.onFailure !== 'previous-good-push') return;
    // A paused pipeline deploys nothing on its own.
    if (this.#store.pauseOf(pipeline.name)) return;
    const recent = this.#store.listRuns(pipeline.name, 100).runs;
    const serving = this.#store.currentDeployment(pipeline.name);
    const servingRun = serving ? (recent.find((r) => r.id === serving.runId) ?? this.#store.getRun(serving.runId) ?? null) : null;
    // Never the same commit twice: commits already retried as follow-ups are done.
    const tried = new Set(recent.filter((r) => r.follows !== null && r.commit).map((r) => r.commit!));
    const burst = (r: RunView): BurstRun => ({ id: r.id, commit: r.commit ?? '', status: r.status, trigger: r.trigger, createdAt: r.createdAt });
    const next = previousGoodPush(recent.filter((r) => r.commit).map(burst), burst(failed), servingRun ? burst(servingRun) : null, tried);
    if (!next) return;
    const from = recent.find((r) => r.id === next.run.id);
    const [run] = await this.#submit([{
      pipeline: pipeline.name, trigger: 'push', commit: next.run.commit, follows: failed.id,
      ...(from?.subject ? { subject: from.subject } : {}), ...(from?.author ? { author: from.author } : {}),
    }]);
    this.#log.info({ pipeline: pipeline.name, failed: failed.id, run: run?.id, commit: next.run.commit }, next.reason);
  }
}
