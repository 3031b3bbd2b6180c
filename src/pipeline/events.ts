import type { ServiceDeployResult } from './ports.ts';
import type { RunStatus, StageName, StageStatus } from './states.ts';

/**
 * What a worker reports about a run. Workers never write the store: they publish these
 * through Redis (src/queue/event-bus.ts) and the process that owns the store applies
 * them (src/store/apply-event.ts). Times are ISO strings set where the thing happened.
 */
export type RunEvent =
  /** attempt > 1: the job was retried after its worker died; stages start over. */
  | { type: 'run.started'; runId: string; at: string; worker: string; attempt: number }
  /** Graceful shutdown put the run back in the queue before it reached deploy. */
  | { type: 'run.parked'; runId: string; at: string; reason: string }
  | { type: 'run.commit'; runId: string; commit: string; subject: string; author: string }
  | { type: 'stage.started'; runId: string; stage: StageName; at: string }
  | { type: 'stage.finished'; runId: string; stage: StageName; status: StageStatus; at: string; error?: string }
  | { type: 'log'; runId: string; stage: StageName | null; at: string; lines: string[] }
  | { type: 'image'; runId: string; ref: string; digest: string }
  | { type: 'service.result'; runId: string; at: string; result: ServiceDeployResult }
  | { type: 'deployed'; runId: string; service: string; image: string; digest: string; commit: string; at: string }
  | { type: 'run.finished'; runId: string; status: RunStatus; at: string; error?: string; supersededBy?: string };


/** Where a running stage sends its output, one line at a time. */
export type LineSink = (line: string) => void;

export interface RunReporter {
  emit(event: RunEvent): void;
  /** Resolves once everything emitted so far is durable in Redis. */
  flush(): Promise<void>;
}
