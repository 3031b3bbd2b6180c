/**
 * Run and stage status: closed sets, and the table of allowed status changes. The
 * run lifecycle (lifecycle.ts) is the only code that changes a run's state, and it
 * consults this table for every status change, so a late or duplicated event cannot
 * move a finished run back to life.
 */
/**
 * rolled_back: the new version was taken back and the previous one serves again: swarm
 * rolled the failing service back (its tasks failed or never became healthy) and every
 * other service of the run was put back too, or the deploy converged but users did not
 * get the new commit (edge verification or the probe said so) and the deployer put the
 * previous image back. A deploy that timed out, or whose rollback failed, is `failed`.
 */
export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'superseded', 'rolled_back'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const STAGE_NAMES = ['fetch', 'build', 'push', 'deploy'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

export const STAGE_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'] as const;
export type StageStatus = (typeof STAGE_STATUSES)[number];

export type Trigger = 'push' | 'rebuild' | 'rollback' | 'poll';

const runTransitions: Record<RunStatus, readonly RunStatus[]> = {
  queued: ['running', 'cancelled', 'superseded', 'failed'],
  // running -> queued: parked by a graceful shutdown, resumes on the next start.
  // running -> superseded: a newer push cancelled it before deploy (cancelSuperseded).
  running: ['succeeded', 'failed', 'cancelled', 'queued', 'superseded', 'rolled_back'],
  succeeded: [],
  rolled_back: [],
  failed: [],
  cancelled: [],
  superseded: [],
};

const stageTransitions: Record<StageStatus, readonly StageStatus[]> = {
  pending: ['running', 'skipped', 'cancelled'],
  running: ['succeeded', 'failed', 'cancelled', 'pending'],
  succeeded: ['pending'],
  failed: ['pending'],
  skipped: ['pending'],
  cancelled: ['pending'],
};

export function canTransitionRun(from: RunStatus, to: RunStatus): boolean {
  return runTransitions[from].includes(to);
}

export function canTransitionStage(from: StageStatus, to: StageStatus): boolean {
  return stageTransitions[from].includes(to);
}

export function isTerminal(status: RunStatus): boolean {
  return runTransitions[status].length === 0;
}
