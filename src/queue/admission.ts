import type { Logger } from 'pino';
import { protectedTargets } from '../pipeline/rollback-targets.ts';
import type { Config } from '../config/types.ts';
import type { RunStore, WaitingRun } from '../store/run-store.ts';
import type { ControlPublisher } from './control.ts';
import type { RunJobData, RunQueues } from './run-queue.ts';

/**
 * The supersede policy, shared by push ingest and manual control: latest push wins (a
 * newer run supersedes the older ones still waiting, and with `cancelSuperseded` stops
 * one still before deploy), and a paused pipeline holds only its newest waiting run.
 */
export class Admission {
  readonly #store: RunStore;
  readonly #queues: RunQueues;
  readonly #control: ControlPublisher;
  readonly #config: Config;
  readonly #log: Logger;

  constructor(opts: { store: RunStore; queues: RunQueues; control: ControlPublisher; config: Config; log: Logger }) {
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#control = opts.control;
    this.#config = opts.config;
    this.#log = opts.log;
  }

  /** The job that runs `run`: ids, and what the store knows the deploy replaces. */
  jobOf(run: WaitingRun): RunJobData {
    const recorded: Record<string, string> = {};
    const current = this.#store.currentDeployments(run.pipeline);
    for (const d of current) recorded[d.service] = d.image;
    const recordedCommit = current.at(-1)?.commit;
    // What serves when queued (the descent check's fallback when no worker recorded it).
    const serving = current.at(-1);
    // The images of the last retention.protect deployments: the worker's pruning keeps them.
    const p = this.#config.pipelines.find((x) => x.name === run.pipeline);
    const protect = protectedTargets(this.#store.deployments(run.pipeline, 200), p?.retention.protect ?? 5).map((d) => d.image);
    return {
      runId: run.id, pipeline: run.pipeline, commit: run.commit, recorded, trigger: run.trigger,
      ...(recordedCommit ? { recordedCommit } : {}),
      ...(serving ? { serving: { commit: serving.commit, runId: serving.runId } } : {}),
      ...(protect.length ? { protect } : {}),
      ...(run.targetImage ? { image: run.targetImage } : {}),
    };
  }

  /** Queues `run`; throws QueueUnavailable when Redis did not take it. */
  enqueue(run: WaitingRun): Promise<void> {
    return this.#queues.enqueue(this.jobOf(run));
  }

  /**
   * Queues again a run whose job was lost — only while the store still has it queued.
   * Checked as the store has it now, before and after the (awaited) add: a run
   * superseded or cancelled meanwhile is not revived. If it changed during the add, the
   * job is taken out again; if a worker already holds it, that worker is told to stop
   * before it starts (it checks for a stop request first). Returns whether it was queued.
   */
  async requeue(run: WaitingRun): Promise<boolean> {
    if (this.#store.statusOf(run.id) !== 'queued') return false;
    await this.enqueue(run);
    const now = this.#store.statusOf(run.id);
    if (now === 'queued' || now === 'running') return true;
    this.#log.info({ run: run.id, status: now }, 'run ended while its job was being queued again: job withdrawn');
    if (!(await this.#queues.removeWaiting(run.pipeline, run.id))) {
      const kind = now === 'cancelled' ? 'cancel' : 'supersede';
      const supersededBy = kind === 'supersede' ? this.#store.supersededBy(run.id) : null;
      await this.#control.requestStop({ runId: run.id, kind, message: `run already ${now ?? 'removed'}`, ...(supersededBy ? { supersededBy } : {}) });
    }
    return false;
  }

  /** Paused: the push waits, visible; only the newest one is kept waiting. */
  async holdNewest(run: WaitingRun): Promise<void> {
    this.#log.info({ run: run.id, pipeline: run.pipeline }, 'pipeline paused: run held until resumed');
    for (const id of this.#store.queuedRunIdsBefore(run.pipeline, run.id)) {
      if ((await this.#queues.jobState(run.pipeline, id)).state === 'missing') {
        this.#store.finish(id, 'superseded', `superseded by ${run.id}`, run.id);
      }
    }
  }

  /** `run` was queued: older runs still waiting are superseded by it (and, with cancelSuperseded, stopped). */
  async supersedeOlder(run: WaitingRun): Promise<void> {
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

  /** supersedeOlder, logging instead of failing: the run itself is queued either way. */
  supersedeOlderQuietly(run: WaitingRun): Promise<void> {
    return this.supersedeOlder(run).catch((err: unknown) => this.#log.warn({ err, run: run.id }, 'could not supersede older runs'));
  }
}
