/**
 * Deciding whether a swarm rollout has converged or failed, from snapshots of the
 * service and its tasks. Pure, so each sequence seen on a real engine can be pinned
 * in a unit test. Facts it relies on (see docs/docker-notes.md):
 * - UpdateStatus is empty for ~200 ms after an update, and may still describe the
 *   previous update: it is only trusted once its StartedAt differs from the one seen
 *   before our update.
 * - `completed` arrives after the new tasks ran for the monitor window; with
 *   start-first the old tasks may still be shutting down, which is fine.
 * - `rollback_started` → `rollback_completed` is a FAILED deploy, never a success.
 * - A task that stays pending (no node can run it, host port taken) is not a failure
 *   for swarm: only the deployer's own timeout ends that.
 */
export interface UpdateStatus {
  State?: string;
  StartedAt?: string;
  CompletedAt?: string;
  Message?: string;
}

export interface TaskSnapshot {
  id: string;
  image: string;
  desiredState: string;
  state: string;
  err: string | undefined;
  message: string | undefined;
  exitCode: number | undefined;
}

export interface RolloutSnapshot {
  updateStatus: UpdateStatus | undefined;
  /** StartedAt of UpdateStatus as it was before our update (undefined if none). */
  previousStartedAt: string | undefined;
  tasks: TaskSnapshot[];
  target: string;
  /** Replicas wanted, or undefined for global services. */
  replicas: number | undefined;
  elapsedMs: number;
}

export type RolloutAssessment =
  | { kind: 'waiting'; detail: string }
  | { kind: 'rolling_back'; detail: string }
  | { kind: 'converged'; detail: string }
  | { kind: 'failed'; reason: string; taskErrors: string[] };

/** How long an absent UpdateStatus is tolerated before judging by tasks alone. */
export const STATUS_GRACE_MS = 3_000;

export function assessRollout(s: RolloutSnapshot): RolloutAssessment {
  const fresh = s.updateStatus?.State && s.updateStatus.StartedAt !== s.previousStartedAt ? s.updateStatus : undefined;
  const errors = taskErrors(s.tasks, s.target);
  const state = fresh?.State;
  const msg = fresh?.Message ? `: ${fresh.Message}` : '';
  switch (state) {
    case 'rollback_started':
      return { kind: 'rolling_back', detail: `swarm is rolling back${msg}` };
    case 'rollback_completed':
      return { kind: 'failed', reason: `swarm rolled the service back${msg}`, taskErrors: errors };
    case 'rollback_paused':
      return { kind: 'failed', reason: `swarm rollback paused${msg}`, taskErrors: errors };
    case 'paused':
      return { kind: 'failed', reason: `update paused${msg}`, taskErrors: errors };
    case 'completed':
    case undefined: {
      if (state === undefined && s.elapsedMs < STATUS_GRACE_MS) return { kind: 'waiting', detail: 'waiting for swarm to start the update' };
      const { running, want } = tasksRunning(s.tasks, s.target, s.replicas);
      if (running >= want) return { kind: 'converged', detail: `${running}/${want} tasks running the new image` };
      return { kind: 'waiting', detail: `${running}/${want} tasks running the new image${state ? ' (update completed)' : ''}` };
    }
    default:
      return { kind: 'waiting', detail: `${state}: ${summarise(s.tasks, s.target)}` };
  }
}

/** How many tasks meant to run do run `image`, and how many are wanted (replicas, or all for global). */
export function tasksRunning(tasks: TaskSnapshot[], image: string, replicas: number | undefined): { running: number; want: number } {
  const running = tasks.filter((t) => t.desiredState === 'running' && t.state === 'running' && t.image === image).length;
  const want = replicas ?? Math.max(1, tasks.filter((t) => t.desiredState === 'running').length);
  return { running, want };
}

/** Failures of tasks running the new image, newest first, deduplicated. */
export function taskErrors(tasks: TaskSnapshot[], target: string): string[] {
  const out: string[] = [];
  for (const t of tasks) {
    if (t.image !== target) continue;
    if (!['failed', 'rejected', 'shutdown', 'complete', 'orphaned'].includes(t.state)) continue;
    const text = t.err ?? (t.exitCode !== undefined && t.exitCode !== 0 ? `exit code ${t.exitCode}` : undefined);
    if (text && !out.includes(text)) out.push(text);
  }
  return out;
}

function summarise(tasks: TaskSnapshot[], target: string): string {
  const counts = new Map<string, number>();
  for (const t of tasks) {
    if (t.image !== target || t.desiredState !== 'running') continue;
    counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
  }
  if (counts.size === 0) return 'no new task yet';
  return [...counts].map(([k, v]) => `${v} ${k}`).join(', ');
}
