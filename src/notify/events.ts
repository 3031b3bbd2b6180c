import type { NotifyEvent } from '../config/types.ts';
import { isTerminal, type RunStatus } from '../pipeline/states.ts';
import type { RunView } from '../store/run-store.ts';
import { outcomeOf } from '../report/outcome.ts';

/**
 * Which notification events a run has reached (pure). `previous` is how the
 * pipeline's last decided run before this one ended: a success after a failure is also
 * `recovered`. `started`: a worker's start of the run was applied since the last look,
 * so a run whose start and end were applied together still gets its `started`.
 * Superseded runs are not announced: the run that replaced them is.
 */
export function runEvents(run: RunView, previous: RunStatus | undefined, started = false): NotifyEvent[] {
  if (!isTerminal(run.status)) return run.status === 'running' || started ? ['started'] : [];
  const end = endEvents(run, previous);
  return started && run.startedAt !== null ? ['started', ...end] : end;
}

function endEvents(run: RunView, previous: RunStatus | undefined): NotifyEvent[] {
  const outcome = outcomeOf(run);
  if (!outcome) return [];
  switch (outcome.kind) {
    case 'succeeded':
      return previous === 'failed' || previous === 'rolled_back' ? ['succeeded', 'recovered'] : ['succeeded'];
    case 'rolled_back':
      return ['rolled_back'];
    case 'timed_out':
      return ['timed_out'];
    case 'cancelled':
      return ['cancelled'];
    case 'failed':
    case 'interrupted':
      return ['failed'];
    case 'superseded':
      return [];
  }
}
