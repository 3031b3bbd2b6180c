import type { NotifyEvent } from '../config/types.ts';
import { isTerminal, type RunStatus } from '../pipeline/states.ts';
import type { RunView } from '../store/run-store.ts';
import { outcomeOf } from '../report/outcome.ts';

/**
 * Which notification events a run has reached (pure). `previous` is how the
 * pipeline's last decided run before this one ended: a success after a failure is also
 * `recovered`. A run seen for the first time when already over gets no `started`.
 * Superseded runs are not announced: the run that replaced them is.
 */
export function runEvents(run: RunView, previous: RunStatus | undefined): NotifyEvent[] {
  if (!isTerminal(run.status)) return run.status === 'running' ? ['started'] : [];
  const outcome = outcomeOf(run);
  if (!outcome) return [];
  switch (outcome.kind) {
    case 'succeeded':
      return previous === 'failed' ? ['succeeded', 'recovered'] : ['succeeded'];
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
