import type { Logger } from 'pino';
import type { RollbackTargetChecks } from '../pipeline/rollback-targets.ts';
import type { Config } from '../config/types.ts';
import type { NewRun, RunStore, RunView } from '../store/run-store.ts';
import { Admission } from './admission.ts';
import type { ControlPublisher } from './control.ts';
import { PushIngest, type PushAccepted, type PushSubmission } from './push-ingest.ts';
import { Reconciler } from './reconciler.ts';
import { RunControl, type CancelResult } from './run-control.ts';
import type { RunQueues } from './run-queue.ts';

export { QueueUnavailable } from '../lib/errors.ts';
export type { CancelResult } from './run-control.ts';
export type { PushAccepted, PushSubmission } from './push-ingest.ts';

/**
 * The store owner's side of the queue, as the web layer calls it: ingest (push-ingest.ts),
 * manual control (run-control.ts) and reconcile/retention (reconciler.ts), sharing one
 * supersede policy (admission.ts). Each lives in its own module; this only wires them.
 */
export class Scheduler {
  readonly ingest: PushIngest;
  readonly control: RunControl;
  readonly reconciler: Reconciler;

  constructor(opts: { store: RunStore; queues: RunQueues; control: ControlPublisher; config: Config; log: Logger; targets?: RollbackTargetChecks }) {
    const admission = new Admission(opts);
    this.ingest = new PushIngest({ store: opts.store, queues: opts.queues, admission, log: opts.log });
    this.control = new RunControl({ store: opts.store, queues: opts.queues, control: opts.control, admission, ingest: this.ingest, log: opts.log, ...(opts.targets ? { targets: opts.targets } : {}) });
    this.reconciler = new Reconciler({ store: opts.store, queues: opts.queues, admission, config: opts.config, log: opts.log });
  }

  submitPush(push: PushSubmission): Promise<PushAccepted> {
    return this.ingest.submitPush(push);
  }
  submit(runs: NewRun[]): Promise<RunView[]> {
    return this.ingest.submit(runs);
  }
  pause(pipeline: string, reason: string, by: string): void {
    this.control.pause(pipeline, reason, by);
  }
  resume(pipeline: string): Promise<RunView | undefined> {
    return this.control.resume(pipeline);
  }
  startHeld(runId: string): Promise<{ run: RunView } | { error: string; status: 404 | 409 }> {
    return this.control.startHeld(runId);
  }
  rollback(pipeline: string, deploymentId: string | undefined, by: string): Promise<{ run: RunView } | { error: string }> {
    return this.control.rollback(pipeline, deploymentId, by);
  }
  cancel(runId: string, by: string): Promise<CancelResult> {
    return this.control.cancel(runId, by);
  }
  start(intervalMs?: number): void {
    this.reconciler.start(intervalMs);
  }
  stop(): Promise<void> {
    return this.reconciler.stop();
  }
  reconcile(opts?: { graceMs?: number }): Promise<void> {
    return this.reconciler.reconcile(opts);
  }
  prune(): Promise<void> {
    return this.reconciler.prune();
  }
}
