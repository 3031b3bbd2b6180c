import { formatDuration } from '../lib/duration.ts';
import { isTerminal } from '../pipeline/states.ts';
import type { RunView } from '../store/run-store.ts';

/**
 * How a run ended, in the words people use: one closed set shared by GitHub reports
 * and notifications. Pure: derived from the run as the store holds it.
 * - `rolled_back` / `timed_out`: the rollout failed and the previous version serves again;
 * - `failed`: a stage failed (build, push, …) or the rollout failed without a rollback;
 * - `interrupted`: failed without any stage failing (its worker died, its job vanished).
 */
export type RunOutcomeKind = 'succeeded' | 'failed' | 'rolled_back' | 'timed_out' | 'cancelled' | 'superseded' | 'interrupted';

export interface RunOutcomeView {
  kind: RunOutcomeKind;
  /** One line: why, for failures; what happened, otherwise. */
  reason: string;
  /** The stage that failed, if one did. */
  stage: string | null;
}

export function outcomeOf(run: RunView): RunOutcomeView | undefined {
  if (!isTerminal(run.status)) return undefined;
  const failedStage = run.stages.find((s) => s.status === 'failed');
  switch (run.status) {
    case 'succeeded':
      return { kind: 'succeeded', reason: `live on ${servicesOf(run)}`, stage: null };
    case 'cancelled':
      return { kind: 'cancelled', reason: run.error ?? 'cancelled', stage: null };
    case 'superseded':
      return { kind: 'superseded', reason: run.supersededBy ? `superseded by run ${run.supersededBy}` : (run.error ?? 'superseded by a newer push'), stage: null };
    case 'rolled_back':
      // Swarm converged, but users did not get the new commit (edge verification or the
      // probe): the deployer put the previous version back.
      return { kind: 'rolled_back', reason: run.error ?? 'rolled back', stage: 'deploy' };
    case 'failed': {
      // The service whose rollout failed first names the outcome; the services restored
      // afterwards (fleet rollback) report rolled_back too, but they are the consequence.
      const first = run.deploys.find((d) => d.outcome !== 'succeeded');
      const reason = run.error ?? failedStage?.error ?? 'failed';
      if (first?.outcome === 'rolled_back') return { kind: 'rolled_back', reason, stage: 'deploy' };
      if (first?.outcome === 'timed_out') return { kind: 'timed_out', reason, stage: 'deploy' };
      if (!failedStage) return { kind: 'interrupted', reason, stage: null };
      return { kind: 'failed', reason, stage: failedStage.name };
    }
    default:
      return undefined;
  }
}

export function servicesOf(run: RunView): string {
  const names = [...new Set(run.deploys.map((d) => d.service))];
  return names.length ? names.join(', ') : 'its services';
}

/** Wall time from start (or creation) to finish, as text; '' while running. */
export function durationOf(run: RunView): string {
  const ms = durationMs(run);
  return ms === undefined ? '' : formatDuration(ms);
}

export function durationMs(run: RunView): number | undefined {
  const start = run.startedAt ?? run.createdAt;
  if (!run.finishedAt) return undefined;
  return Math.max(0, Date.parse(run.finishedAt) - Date.parse(start));
}

/** Seconds a finished stage took, or undefined. */
export function stageSeconds(stage: { startedAt: string | null; finishedAt: string | null }): number | undefined {
  if (!stage.startedAt || !stage.finishedAt) return undefined;
  return Math.max(0, (Date.parse(stage.finishedAt) - Date.parse(stage.startedAt)) / 1000);
}

/** Cuts text to `max` characters (GitHub limits descriptions to 140). */
export function clip(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}
