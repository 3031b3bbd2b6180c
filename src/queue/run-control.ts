import type { Logger } from 'pino';
import { Refused } from '../lib/errors.ts';
import type { RollbackTargetChecks } from '../pipeline/rollback-targets.ts';
import { isTerminal } from '../pipeline/states.ts';
import type { RunStore, RunView } from '../store/run-store.ts';
import type { Admission } from './admission.ts';
import type { ControlPublisher } from './control.ts';
import type { PushIngest } from './push-ingest.ts';
import type { RunQueues } from './run-queue.ts';

export type CancelResult =
  | { kind: 'cancelled' }
  | { kind: 'cancelling' }
  | { kind: 'not_found' }
  | { kind: 'conflict'; reason: string };

/** What people do to runs and pipelines by hand: cancel, pause, resume, start a held run, roll back. */
export class RunControl {
  readonly #store: RunStore;
  readonly #queues: RunQueues;
  readonly #control: ControlPublisher;
  readonly #admission: Admission;
  readonly #ingest: PushIngest;
  readonly #log: Logger;
  readonly #targets: RollbackTargetChecks | undefined;

  constructor(opts: { store: RunStore; queues: RunQueues; control: ControlPublisher; admission: Admission; ingest: PushIngest; log: Logger; targets?: RollbackTargetChecks }) {
    this.#targets = opts.targets;
    this.#store = opts.store;
    this.#queues = opts.queues;
    this.#control = opts.control;
    this.#admission = opts.admission;
    this.#ingest = opts.ingest;
    this.#log = opts.log;
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
    await this.#admission.enqueue(newest);
    for (const older of heldRuns) this.#store.finish(older.id, 'superseded', `superseded by ${newest.id}`, newest.id);
    await this.#admission.supersedeOlder(newest);
    return newest;
  }

  /** Deploys one run held by a pause, by hand; the pipeline stays paused. */
  async startHeld(runId: string): Promise<{ run: RunView } | { error: string; status: 404 | 409 }> {
    const run = this.#store.getRun(runId);
    if (!run) return { error: `no run "${runId}"`, status: 404 };
    if (run.status !== 'queued' || (await this.#queues.jobState(run.pipeline, run.id)).state !== 'missing') {
      return { error: `run ${runId} is not waiting on a paused pipeline (status ${run.status})`, status: 409 };
    }
    await this.#admission.enqueue(run);
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
    const target = deploymentId ? history.find((d) => d.id === deploymentId) : history.find((d) => d !== current && d.image !== current?.image);
    if (!target) return { error: deploymentId ? `no deployment "${deploymentId}" in pipeline ${pipeline}` : 'no previous deployment to roll back to' };
    // Before anything changes (pause, run, service): a target whose image is gone from
    // the registry could only fail mid-rollout. "Unknown" (registry unreachable) is no reason to refuse.
    const there = await this.#targets?.checkNow(target.image);
    if (there?.state === 'missing') {
      this.#log.warn({ pipeline, deployment: target.id, image: target.image }, 'rollback refused: image gone from the registry');
      return { error: `cannot roll back to deployment ${target.id} (${target.commit.slice(0, 12)}): ${there.detail}; nothing was changed` };
    }
    this.pause(pipeline, `rolled back to ${target.commit.slice(0, 12)} (${target.image}) by ${by}`, by);
    const [run] = await this.#ingest.submit([{ pipeline, trigger: 'rollback', commit: target.commit, targetImage: target.image, requestedBy: by }]);
    if (!run) throw new Refused(409, 'the rollback run was not created');
    return { run };
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
}
