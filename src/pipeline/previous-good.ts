/**
 * `onFailure: previous-good-push` (issue #15, item 5): when the newest run of a burst of
 * pushes fails or rolls back, the pushes it superseded were never tried — one of them
 * may be good. This picks the one to deploy next, as its own run linked to the failed
 * one. Pure: the store supplies the runs, the scheduler creates the run.
 */

export interface BurstRun {
  id: string;
  commit: string;
  status: string;
  trigger: string;
  createdAt: string;
}

export interface FollowUp {
  /** The superseded run whose commit is deployed again. */
  run: BurstRun;
  /** One line for both runs' logs. */
  reason: string;
}

/** Triggers that come from pushes (a rebuild or rollback asked for a specific thing). */
const PUSHED = new Set(['push', 'poll']);

/**
 * @param runs the pipeline's runs (any order; recent ones suffice)
 * @param failed the run that just failed or rolled back
 * @param serving the run whose deployment serves now (null if none is recorded)
 * @param tried commits already retried after a failure (never twice)
 */
export function previousGoodPush(runs: BurstRun[], failed: BurstRun, serving: BurstRun | null, tried: ReadonlySet<string> = new Set()): FollowUp | undefined {
  if (!PUSHED.has(failed.trigger)) return undefined;
  // A newer run exists: it deploys something newer anyway.
  if (runs.some((r) => r.id !== failed.id && r.createdAt > failed.createdAt)) return undefined;
  const candidates = runs
    .filter((r) => r.status === 'superseded' && PUSHED.has(r.trigger))
    .filter((r) => r.createdAt < failed.createdAt)
    // "Newer than what serves": never go back past the deployed version.
    .filter((r) => !serving || r.createdAt > serving.createdAt)
    .filter((r) => r.commit !== failed.commit && r.commit !== serving?.commit && !tried.has(r.commit))
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  const run = candidates[0];
  if (!run) return undefined;
  return { run, reason: `run ${failed.id} (${failed.commit.slice(0, 12)}) ${failed.status}; deploying ${run.commit.slice(0, 12)}, the newest push it had superseded (onFailure: previous-good-push)` };
}
